package wasure.fs;

import java.io.File;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.UserPrincipal;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's raw local file system, with file modes, owners and links read and set through java.nio.
 *
 * <p>Without libhadoop.so (Spark's distribution ships none) {@link RawLocalFileSystem} starts a
 * process for each of them: {@code chmod} for every file and directory it creates, {@code ls -ld}
 * for the permission of every listed file, {@code readlink} twice per rename through a
 * {@code FileContext} (every Delta commit). One run of wasure's test suite started 34,405 such
 * processes, ~2.5 ms each. This class answers the same questions with one {@code stat} or
 * {@code chmod} system call: the same lengths, times, modes (the sticky bit included), owners and
 * groups, and the same exceptions (a missing file is a {@link FileNotFoundException}). What it does
 * not cover (a symbolic link's own status, a mode beyond rwx bits, a JDK without the "unix"
 * attribute view) goes to Hadoop's own code.
 */
public class NioRawLocalFileSystem extends RawLocalFileSystem {
    private static final String ATTRIBUTES = "unix:mode,size,lastModifiedTime,lastAccessTime,isDirectory,owner,group";
    private static final PosixFilePermission[] BITS = {   // bit 8 (0400) down to bit 0 (0001)
        PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE,
        PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
        PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE};

    private long blockSize;

    @Override
    public void initialize(URI uri, Configuration conf) throws IOException {
        super.initialize(uri, conf);
        blockSize = getDefaultBlockSize(new Path(uri));      // what Hadoop's statuses carry
    }

    @Override
    public FileStatus getFileStatus(Path f) throws IOException {
        File file = pathToFile(f);
        Map<String, Object> stat;
        try {
            stat = Files.readAttributes(file.toPath(), ATTRIBUTES);      // follows links, as Hadoop's does
        } catch (NoSuchFileException e) {
            throw new FileNotFoundException("File " + f + " does not exist");
        } catch (UnsupportedOperationException | IllegalArgumentException e) {      // no unix view; a name NIO refuses
            return super.getFileStatus(f);
        }
        int mode = (Integer) stat.get("mode");
        return new FileStatus((Long) stat.get("size"), (Boolean) stat.get("isDirectory"), 1, blockSize,
                ((FileTime) stat.get("lastModifiedTime")).toMillis(), ((FileTime) stat.get("lastAccessTime")).toMillis(),
                new FsPermission((short) (mode & 01777)),
                ((UserPrincipal) stat.get("owner")).getName(), ((GroupPrincipal) stat.get("group")).getName(),
                new Path(file.getPath()).makeQualified(getUri(), getWorkingDirectory()));
    }

    @Override
    public FileStatus[] listStatus(Path f) throws IOException {
        File file = pathToFile(f);
        if (file.exists() && !file.isDirectory()) {       // Hadoop's own answer here loads its mode lazily with ls
            return new FileStatus[] {getFileStatus(f)};
        }
        return super.listStatus(f);                        // a directory: getFileStatus of each entry
    }

    @Override
    public FileStatus getFileLinkStatus(Path f) throws IOException {
        if (Files.isSymbolicLink(pathToFile(f).toPath())) {
            return super.getFileLinkStatus(f);
        }
        return getFileStatus(f);                           // not a link: its status, as Hadoop answers
    }

    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
        short mode = permission.toShort();
        if ((mode & ~0777) != 0) {                         // the sticky bit: only chmod sets it
            super.setPermission(p, permission);
            return;
        }
        Set<PosixFilePermission> bits = EnumSet.noneOf(PosixFilePermission.class);
        for (int i = 0; i < BITS.length; i++) {
            if ((mode & (0400 >> i)) != 0) {
                bits.add(BITS[i]);
            }
        }
        try {
            Files.setPosixFilePermissions(pathToFile(p).toPath(), bits);
        } catch (NoSuchFileException e) {
            throw new FileNotFoundException("File " + p + " does not exist");
        } catch (UnsupportedOperationException e) {
            super.setPermission(p, permission);
        }
    }
}

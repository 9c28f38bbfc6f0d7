package wasure.fs;

import org.apache.hadoop.fs.LocalFileSystem;

/**
 * The checksummed local file system ({@code fs.file.impl}) over {@link NioRawLocalFileSystem}:
 * Hadoop's {@link LocalFileSystem} with file modes, owners and links handled without a process.
 */
public class NioLocalFileSystem extends LocalFileSystem {
    public NioLocalFileSystem() {
        super(new NioRawLocalFileSystem());
    }
}

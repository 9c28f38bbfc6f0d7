package wasure.udf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;

import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;
import org.roaringbitmap.RoaringBitmap;

/**
 * Whether a row of a Delta table's data file is still in the table: its row index is not in the
 * file's deletion vector. What Delta's reader does for a table with deletion vectors, for
 * {@code LakeTable.read_now}, which reads a small table's files as plain Parquet instead of
 * planning a Delta scan (jobs/lake/plain_files.py).
 *
 * <p>Arguments: {@code _metadata.file_path} and {@code _metadata.row_index} of the Parquet read.
 * Files are keyed by their name (Delta names data files with a UUID; the caller checks the names
 * are unique in the table). Each vector is given as Delta stores it (PROTOCOL.md, "Deletion Vector
 * Format"): the magic number 1681511377, then a 64-bit "portable" RoaringBitmapArray, little-endian:
 * the number of 32-bit bitmaps (8 bytes), then per bitmap its high 32 bits (4 bytes) and the bitmap
 * in Roaring's portable format. The vectors travel to the executors inside the task.
 */
public final class RowNotDeleted implements UDF2<String, Long, Boolean> {
    private static final long serialVersionUID = 1L;
    static final int MAGIC = 1681511377;

    private final HashMap<String, HashMap<Integer, RoaringBitmap>> deleted = new HashMap<>();
    private long cardinality;

    public RowNotDeleted(Map<String, byte[]> vectors) {
        for (Map.Entry<String, byte[]> entry : vectors.entrySet()) {
            HashMap<Integer, RoaringBitmap> bitmaps = parse(entry.getValue());
            for (RoaringBitmap bitmap : bitmaps.values()) {
                cardinality += bitmap.getLongCardinality();
            }
            deleted.put(entry.getKey(), bitmaps);
        }
    }

    static HashMap<Integer, RoaringBitmap> parse(byte[] data) {
        ByteBuffer buffer = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if (buffer.getInt() != MAGIC) {
            throw new IllegalArgumentException("not a Delta deletion vector (wrong magic number)");
        }
        long count = buffer.getLong();
        HashMap<Integer, RoaringBitmap> bitmaps = new HashMap<>();
        for (long i = 0; i < count; i++) {
            int high = buffer.getInt();
            int start = buffer.position();
            RoaringBitmap bitmap = new RoaringBitmap();
            try {
                bitmap.deserialize(buffer.slice().order(ByteOrder.LITTLE_ENDIAN));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            buffer.position(start + bitmap.serializedSizeInBytes());
            bitmaps.put(high, bitmap);
        }
        if (buffer.hasRemaining()) {
            throw new IllegalArgumentException("a Delta deletion vector with trailing bytes");
        }
        return bitmaps;
    }

    @Override
    public Boolean call(String filePath, Long rowIndex) {
        if (filePath == null || rowIndex == null) {
            return true;
        }
        HashMap<Integer, RoaringBitmap> bitmaps = deleted.get(filePath.substring(filePath.lastIndexOf('/') + 1));
        if (bitmaps == null) {
            return true;
        }
        RoaringBitmap bitmap = bitmaps.get((int) (rowIndex >>> 32));
        return bitmap == null || !bitmap.contains((int) (long) rowIndex);
    }

    /** This filter as a Spark function of (file path, row index), applied without registering a name. */
    public UserDefinedFunction function() {
        return functions.udf(this, DataTypes.BooleanType);
    }

    /** Rows marked deleted over all files: the sum of the vectors' cardinalities (the caller checks it). */
    public long cardinality() {
        return cardinality;
    }

    @Override
    public String toString() {
        return "RowNotDeleted(" + deleted.size() + " files)";
    }
}

package wasure.udf;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

import org.apache.spark.sql.api.java.UDF1;

/**
 * The tokens of a row's string cells that are one of a fixed set of values: what a residue scan
 * or the erasure's value capture keeps of a row (almost always nothing).
 *
 * <p>A cell's tokens are those of {@code jobs.lake.residue.cell_tokens}: the cell itself, and the
 * runs of token characters ({@code 0-9 A-Z a-z @ . _ + -}) of its half-width form (full-width
 * digits and {@code －＋＠．} folded first), each once per cell. A value found in two cells of a
 * row counts twice, as the Spark expressions' explode counted it.
 *
 * <p>Doing this per row in one call replaces Spark's explode of every token of every cell and the
 * join of those rows with the value set: a scan then emits rows only for hits. Like
 * {@link InValueSet}, it holds the values in a field that Spark never prints (the plan shows the
 * function's registered name), and {@link #toString()} withholds them.
 */
public final class TokensInSet implements UDF1<scala.collection.Seq<String>, List<String>> {
    private static final long serialVersionUID = 1L;

    static final String FULL_WIDTH = "０１２３４５６７８９－＋＠．";
    static final String HALF_WIDTH = "0123456789-+@.";

    private final HashSet<String> values;

    public TokensInSet(List<String> values) {
        if (values == null || values.isEmpty()) {
            throw new IllegalArgumentException("the value set must not be empty");
        }
        this.values = new HashSet<>(values);
    }

    @Override
    public List<String> call(scala.collection.Seq<String> cells) {
        List<String> hits = new ArrayList<>(0);
        if (cells == null) {
            return hits;
        }
        scala.collection.Iterator<String> it = cells.iterator();
        while (it.hasNext()) {
            String cell = it.next();
            if (cell != null) {
                hits.addAll(hitsOf(cell));
            }
        }
        return hits;
    }

    /** The cell's distinct tokens that are in the set. */
    Set<String> hitsOf(String cell) {
        Set<String> found = new LinkedHashSet<>(0);
        if (values.contains(cell)) {
            found.add(cell);
        }
        String half = halfWidth(cell);
        int start = -1;
        for (int i = 0; i <= half.length(); i++) {
            boolean token = i < half.length() && isTokenChar(half.charAt(i));
            if (token && start < 0) {
                start = i;
            } else if (!token && start >= 0) {
                String t = half.substring(start, i);
                if (values.contains(t)) {
                    found.add(t);
                }
                start = -1;
            }
        }
        return found;
    }

    static String halfWidth(String cell) {
        StringBuilder out = null;
        for (int i = 0; i < cell.length(); i++) {
            int at = FULL_WIDTH.indexOf(cell.charAt(i));
            if (at >= 0) {
                if (out == null) {
                    out = new StringBuilder(cell);
                }
                out.setCharAt(i, HALF_WIDTH.charAt(at));
            }
        }
        return out == null ? cell : out.toString();
    }

    static boolean isTokenChar(char c) {
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                || c == '@' || c == '.' || c == '_' || c == '+' || c == '-';
    }

    public int size() {
        return values.size();
    }

    @Override
    public String toString() {
        return "TokensInSet(" + values.size() + " values)";
    }
}

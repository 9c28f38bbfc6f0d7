package wasure.udf;

import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.apache.spark.sql.api.java.UDF1;

/**
 * Whether a value is one of a fixed set: the condition of an erasure's Delta DELETE.
 *
 * <p>Delta records a DELETE's condition in its commit ({@code operationParameters.predicate}),
 * literals included, so {@code account_id IN ('A1', ...)} would leave the erased subjects' ids in
 * {@code _delta_log} for as long as the table lives. Registered under a random name, this UDF
 * holds the values in its own field instead: Spark prints a registered UDF as its name and
 * arguments, never its fields, so the commit records {@code in_value_set_ab12(account_id)}.
 * {@link #toString()} withholds the values too. The set travels to executors inside the task,
 * like a broadcast join's keys.
 */
public final class InValueSet implements UDF1<String, Boolean> {
    private static final long serialVersionUID = 1L;

    private final HashSet<String> values;

    public InValueSet(List<String> values) {
        if (values == null || values.isEmpty()) {
            throw new IllegalArgumentException("the value set must not be empty");
        }
        this.values = new HashSet<>(values);
    }

    @Override
    public Boolean call(String value) {
        return value != null && values.contains(value);
    }

    public int size() {
        return values.size();
    }

    @Override
    public String toString() {
        return "InValueSet(" + values.size() + " values)";
    }
}

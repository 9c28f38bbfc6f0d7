package wasure.udf;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Base64;
import java.util.Locale;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.spark.sql.api.java.UDF1;

/**
 * HMAC-SHA256 pseudonym of one value: the JVM twin of anonymizers.pseudonym's Arrow UDF.
 *
 * <p>Same output, byte for byte: with {@code normalize}, the value is normalized like Python's
 * {@code normalize_value} (NFKC, Python's {@code str.strip()}, lower case if the whole value is an
 * e-mail address), encoded as UTF-8 and hashed with the key; written as the unpadded base64url
 * of the digest's first 16 bytes ({@code base64url128}, the pseudonym format), of the whole digest
 * ({@code base64url}), or as hex (lower case). Without {@code normalize} every value is hashed as it is.
 *
 * <p>An ASCII value is normalized here directly (NFKC changes nothing there). Other text is
 * normalized here too when the caller names Python's Unicode version ({@code unicodeVersion},
 * Python's {@code unicodedata.unidata_version}): by {@link UnicodeText}, with the ICU4J that Spark
 * ships, as Python's version would; the caller asks {@link #normalizesUnicode} first. Without
 * it (null) a non-ASCII value returns null and the caller hashes it with the Python twin.
 *
 * <p>The key lives in this object only. Spark prints a registered UDF by its name, never its
 * fields, so the key does not reach a plan; {@link #toString()} withholds it too.
 */
public final class KeyedPseudonym implements UDF1<String, String> {
    private static final long serialVersionUID = 1L;
    private static final char[] HEX = "0123456789abcdef".toCharArray();
    private static final int REMEMBERED = 1 << 13;   // memo slots per copy (~1 MB with their strings)

    private final byte[] key;
    private final boolean normalize;
    private final String encoding;
    private final String unicodeVersion;
    private transient Mac mac;
    private transient String[] seen;         // input values, by hash
    private transient String[] pseudonyms;   // and their pseudonyms

    public KeyedPseudonym(byte[] key, boolean normalize, String encoding) {
        this(key, normalize, encoding, null);
    }

    public KeyedPseudonym(byte[] key, boolean normalize, String encoding, String unicodeVersion) {
        if (key == null || key.length < 32) {
            throw new IllegalArgumentException("key must be at least 32 bytes");
        }
        if (!"base64url128".equals(encoding) && !"hex".equals(encoding) && !"base64url".equals(encoding)) {
            throw new IllegalArgumentException("encoding must be base64url128, hex or base64url");
        }
        this.key = key.clone();
        this.normalize = normalize;
        this.encoding = encoding;
        this.unicodeVersion = unicodeVersion;
    }

    /** True when this JVM can normalize any text as Python's {@code unicodedata} of {@code version}
     * does (the ICU4J on the classpath is one {@link UnicodeText} knows for that version). */
    public static boolean normalizesUnicode(String version) {
        try {
            return UnicodeText.covers(version);
        } catch (LinkageError missing) {
            return false;
        }
    }

    @Override
    public synchronized String call(String value) throws Exception {
        // Synchronized: one Mac and memo per deserialized copy; tasks normally hold their own copy.
        if (value == null) {
            return null;
        }
        // Linking codes repeat (a member id on each of the member's event rows, a few hundred
        // members per file of a bucketed table): each value's pseudonym is kept in a small
        // direct-mapped memo, so a repeat costs a lookup instead of normalization and HMAC.
        int slot = value.hashCode() & (REMEMBERED - 1);
        if (seen == null) {
            seen = new String[REMEMBERED];
            pseudonyms = new String[REMEMBERED];
        } else if (value.equals(seen[slot])) {
            return pseudonyms[slot];
        }
        String text = normalize ? normalized(unicodeVersion, value) : value;
        if (text == null) {
            return null;   // non-ASCII without unicodeVersion: left to the Python twin
        }
        if (mac == null) {
            mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
        }
        String pseudonym = encode(mac.doFinal(text.getBytes(StandardCharsets.UTF_8)));
        seen[slot] = value;
        pseudonyms[slot] = pseudonym;
        return pseudonym;
    }

    private String encode(byte[] digest) {
        if ("base64url128".equals(encoding)) {
            return Base64.getUrlEncoder().withoutPadding().encodeToString(Arrays.copyOf(digest, 16));
        }
        if ("base64url".equals(encoding)) {
            return Base64.getUrlEncoder().withoutPadding().encodeToString(digest);
        }
        char[] out = new char[digest.length * 2];
        for (int i = 0; i < digest.length; i++) {
            out[2 * i] = HEX[(digest[i] >> 4) & 0xf];
            out[2 * i + 1] = HEX[digest[i] & 0xf];
        }
        return new String(out);
    }

    /** What {@link #call} hashes with {@code normalize}: Python's {@code normalize_value} of the
     * value; null for non-ASCII text when {@code unicodeVersion} is null. An executor whose ICU4J
     * differs from the driver's fails here (UnicodeText says why) rather than write pseudonyms the
     * driver would not compute. Public for tests, which call it through Spark's {@code reflect}. */
    public static String normalized(String unicodeVersion, String value) {
        String ascii = normalizeAscii(value);
        if (ascii != null || unicodeVersion == null) {
            return ascii;
        }
        UnicodeText.require(unicodeVersion);
        return UnicodeText.normalize(value);
    }

    /** Python's {@code normalize_value} of an ASCII value (NFKC is the identity); null otherwise. */
    public static String normalizeAscii(String value) {
        for (int i = 0; i < value.length(); i++) {
            if (value.charAt(i) >= 0x80) {
                return null;
            }
        }
        String text = strip(value);
        return isEmail(text) ? text.toLowerCase(Locale.ROOT) : text;
    }

    /** Python's {@code str.isspace()} (Unicode 14): the characters {@code strip()} and {@code \s} use. */
    static boolean isPythonSpace(char c) {
        switch (c) {
            case '\t': case '\n': case 0x0b: case 0x0c: case '\r':
            case 0x1c: case 0x1d: case 0x1e: case 0x1f: case ' ':
            case 0x85: case 0xa0: case 0x1680:
            case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
                return true;
            default:
                return c >= 0x2000 && c <= 0x200a;
        }
    }

    static String strip(String text) {
        int start = 0;
        int end = text.length();
        while (start < end && isPythonSpace(text.charAt(start))) {
            start++;
        }
        while (end > start && isPythonSpace(text.charAt(end - 1))) {
            end--;
        }
        return text.substring(start, end);
    }

    /** Python's {@code re.fullmatch(r"[^@\s]+@[^@\s]+", text)}. */
    static boolean isEmail(String text) {
        int at = text.indexOf('@');
        if (at <= 0 || at == text.length() - 1 || text.indexOf('@', at + 1) >= 0) {
            return false;
        }
        for (int i = 0; i < text.length(); i++) {
            if (isPythonSpace(text.charAt(i))) {
                return false;
            }
        }
        return true;
    }

    @Override
    public String toString() {
        return "KeyedPseudonym(key withheld)";
    }
}

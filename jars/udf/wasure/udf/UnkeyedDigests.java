package wasure.udf;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Locale;

import org.apache.spark.sql.api.java.UDF1;

/**
 * The unkeyed digests of one value in the text forms a pseudonym may take: the JVM twin of the
 * Spark SQL in expectations/digests.py ({@code digest_forms}), for the candidates of the
 * unkeyed-hash check built once per table ({@code unkeyed_digests}).
 *
 * <p>Same texts, character for character: for each algorithm (md5, sha1, sha224, sha256, sha384,
 * sha512) of the UTF-8 bytes, lowercased, each form whose length is asked for: hex (2 characters
 * per byte), the unpadded base64url of the whole digest, and, for a digest longer than 16 bytes,
 * the unpadded base64url of its first 16 bytes (22 characters). Spark's SQL reaches them through
 * a hex string that is parsed again, base64 with MIME lines, a cut, a lowercase and two
 * replacements, a new string at each step; here each digest is computed once per value and
 * written once per form.
 */
public final class UnkeyedDigests implements UDF1<String, String[]> {
    private static final long serialVersionUID = 1L;
    private static final char[] HEX = "0123456789abcdef".toCharArray();

    private final String[] algorithms;
    private final int[] lengths;
    private transient MessageDigest[] digests;

    public UnkeyedDigests(List<String> algorithms, List<Integer> lengths) {
        if (algorithms == null || algorithms.isEmpty()) {
            throw new IllegalArgumentException("at least one algorithm is required");
        }
        this.algorithms = new String[algorithms.size()];
        for (int i = 0; i < this.algorithms.length; i++) {
            this.algorithms[i] = javaName(algorithms.get(i));
        }
        this.lengths = new int[lengths == null ? 0 : lengths.size()];
        for (int i = 0; i < this.lengths.length; i++) {
            this.lengths[i] = lengths.get(i);
        }
    }

    private static String javaName(String algorithm) {
        switch (algorithm) {
            case "md5": return "MD5";
            case "sha1": return "SHA-1";
            case "sha224": return "SHA-224";
            case "sha256": return "SHA-256";
            case "sha384": return "SHA-384";
            case "sha512": return "SHA-512";
            default: throw new IllegalArgumentException("unknown algorithm: " + algorithm);
        }
    }

    private boolean wanted(int length) {
        for (int n : lengths) {
            if (n == length) {
                return true;
            }
        }
        return false;
    }

    @Override
    public synchronized String[] call(String value) throws NoSuchAlgorithmException {
        // Synchronized: one set of MessageDigest objects per deserialized copy (tasks hold their own).
        if (value == null) {
            return null;
        }
        if (digests == null) {
            digests = new MessageDigest[algorithms.length];
            for (int i = 0; i < algorithms.length; i++) {
                digests[i] = MessageDigest.getInstance(algorithms[i]);
            }
        }
        byte[] bytes = value.getBytes(StandardCharsets.UTF_8);
        List<String> out = new ArrayList<>(algorithms.length * 2);
        Base64.Encoder base64url = Base64.getUrlEncoder().withoutPadding();
        for (MessageDigest digest : digests) {
            byte[] hash = digest.digest(bytes);            // digest() resets it for the next value
            int n = hash.length;
            if (wanted(2 * n)) {
                out.add(hex(hash));
            }
            if (wanted((4 * n + 2) / 3)) {
                out.add(base64url.encodeToString(hash).toLowerCase(Locale.ROOT));
            }
            if (n > 16 && wanted(22)) {
                out.add(base64url.encodeToString(Arrays.copyOf(hash, 16)).toLowerCase(Locale.ROOT));
            }
        }
        return out.toArray(new String[0]);
    }

    private static String hex(byte[] hash) {
        char[] text = new char[hash.length * 2];
        for (int i = 0; i < hash.length; i++) {
            text[2 * i] = HEX[(hash[i] >> 4) & 0xf];
            text[2 * i + 1] = HEX[hash[i] & 0xf];
        }
        return new String(text);
    }
}

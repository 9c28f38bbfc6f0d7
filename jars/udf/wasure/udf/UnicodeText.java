package wasure.udf;

import com.ibm.icu.lang.UCharacter;
import com.ibm.icu.lang.UProperty;
import com.ibm.icu.text.Normalizer2;
import com.ibm.icu.util.ULocale;
import com.ibm.icu.util.VersionInfo;

import java.util.function.UnaryOperator;

/**
 * Python's {@code normalize_value} (anonymizers/pseudonym.py) for any text, as Python's
 * {@code unicodedata} of a given Unicode version computes it: NFKC, {@code str.strip()}, and
 * {@code str.lower()} when the whole value is an e-mail address.
 *
 * <p>ICU4J (shipped with Spark; Spark 4.2's implements Unicode 17.0) is later than Python 3.11's
 * Unicode 14.0. The Unicode stability policies keep NFKC, the canonical combining classes and,
 * as checked for every character, the lowercase mappings of characters that exist in both versions
 * the same; what differs:
 * <ul>
 * <li>the characters added after Python's version, which Python treats as unassigned: no
 * decomposition, no composition, no case, combining class 0. Such a character splits the text into
 * pieces Python normalizes each on its own, and is kept as it is (ICU's Unicode age of each code
 * point tells which they are);
 * <li>the properties behind the final-sigma rule of {@code str.lower()} (Cased, Case_Ignorable) of
 * two older characters, which changed after Unicode 14: {@link #cased} and {@link #caseIgnorable} answer
 * as Python 3.11 does. So {@code lower} runs CPython's rule for U+03A3 itself.
 * </ul>
 * Those differences were found for this pair of versions only, so {@link #covers} accepts exactly
 * that pair, and any other falls back to the Python twin. {@code tests/test_operators.py} compares
 * every code point (alone and around a sigma), and random text, with Python.
 *
 * <p>Loaded only when a value is not ASCII: a JVM without ICU4J fails on the first such value
 * (NoClassDefFoundError) instead of writing pseudonyms the driver would not compute.
 */
final class UnicodeText {
    private static final Normalizer2 NFKC = Normalizer2.getNFKCInstance();
    private static final String PYTHON_UNICODE = "14.0.0";   // Python 3.11's unicodedata.unidata_version
    private static final VersionInfo PYTHON_AGE = VersionInfo.getInstance(14, 0, 0);
    private static final VersionInfo ICU_UNICODE = VersionInfo.getInstance(17, 0, 0);
    private static final char CAPITAL_SIGMA = '\u03a3';
    private static final int PHARYNGEAL_VOICED_FRICATIVE = 0x0295;   // Ll in Unicode 14 (cased), Lo in 17
    private static final int AHOM_MEDIAL_RA = 0x1171e;               // Mn in Unicode 14 (case-ignorable), Mc in 17

    private UnicodeText() {
    }

    static void require(String pythonVersion) {
        if (!covers(pythonVersion)) {
            throw new IllegalStateException("normalizes Python's Unicode " + PYTHON_UNICODE + " with ICU4J's "
                    + ICU_UNICODE + ", not Python's " + pythonVersion + " with ICU4J's " + UCharacter.getUnicodeVersion());
        }
    }

    /** The pair of Unicode versions whose differences this class knows (see the class comment). */
    static boolean covers(String pythonVersion) {
        return PYTHON_UNICODE.equals(pythonVersion) && UCharacter.getUnicodeVersion().compareTo(ICU_UNICODE) == 0;
    }

    static String normalize(String value) {
        String text = KeyedPseudonym.strip(piecewise(value, NFKC::normalize));
        return KeyedPseudonym.isEmail(text) ? lower(text) : text;
    }

    private static boolean isNew(int codePoint) {
        return UCharacter.getAge(codePoint).compareTo(PYTHON_AGE) > 0;
    }

    /** Python's {@code str.lower()}: full lowercase mappings, and CPython's final-sigma rule. */
    private static String lower(String text) {
        if (text.indexOf(CAPITAL_SIGMA) < 0) {   // without a sigma, ICU's root lowercasing has no context
            return piecewise(text, s -> UCharacter.toLowerCase(ULocale.ROOT, s));
        }
        StringBuilder out = new StringBuilder(text.length());
        for (int i = 0; i < text.length(); ) {
            int codePoint = text.codePointAt(i);
            int next = i + Character.charCount(codePoint);
            if (codePoint == CAPITAL_SIGMA) {
                out.append(finalSigma(text, i) ? '\u03c2' : '\u03c3');
            } else if (isNew(codePoint)) {
                out.appendCodePoint(codePoint);
            } else {
                out.append(UCharacter.toLowerCase(ULocale.ROOT, text.substring(i, next)));
            }
            i = next;
        }
        return out.toString();
    }

    /** CPython's {@code handle_capital_sigma}: cased, case-ignorable*, SIGMA, not (case-ignorable*, cased). */
    private static boolean finalSigma(String text, int at) {
        int before = at;
        int codePoint = 0;
        boolean found = false;
        while (before > 0 && !found) {
            codePoint = text.codePointBefore(before);
            before -= Character.charCount(codePoint);
            found = !caseIgnorable(codePoint);
        }
        if (!found || !cased(codePoint)) {
            return false;
        }
        for (int after = at + 1; after < text.length(); ) {
            codePoint = text.codePointAt(after);
            after += Character.charCount(codePoint);
            if (!caseIgnorable(codePoint)) {
                return !cased(codePoint);
            }
        }
        return true;
    }

    private static boolean cased(int codePoint) {
        return codePoint == PHARYNGEAL_VOICED_FRICATIVE
                || !isNew(codePoint) && UCharacter.hasBinaryProperty(codePoint, UProperty.CASED);
    }

    private static boolean caseIgnorable(int codePoint) {
        return codePoint == AHOM_MEDIAL_RA
                || !isNew(codePoint) && UCharacter.hasBinaryProperty(codePoint, UProperty.CASE_IGNORABLE);
    }

    /** {@code op} applied to the runs of characters Python knows, the others kept in place. */
    private static String piecewise(String value, UnaryOperator<String> op) {
        StringBuilder out = null;
        int start = 0;
        for (int i = 0; i < value.length(); ) {
            int codePoint = value.codePointAt(i);
            int next = i + Character.charCount(codePoint);
            if (UCharacter.getAge(codePoint).compareTo(PYTHON_AGE) > 0) {
                if (out == null) {
                    out = new StringBuilder(value.length() + 8);
                }
                out.append(op.apply(value.substring(start, i))).appendCodePoint(codePoint);
                start = next;
            }
            i = next;
        }
        return out == null ? op.apply(value) : out.append(op.apply(value.substring(start))).toString();
    }
}

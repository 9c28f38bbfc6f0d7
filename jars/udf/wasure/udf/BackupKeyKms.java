package wasure.udf;

import java.util.Base64;
import java.util.HashMap;
import java.util.Map;

import org.apache.parquet.crypto.KeyAccessDeniedException;
import org.apache.parquet.crypto.keytools.LocalWrapKmsClient;

/**
 * The KMS client of wasure's encrypted backups (Parquet modular encryption, jobs/backup_crypto.py).
 *
 * <p>Parquet's {@code PropertiesDrivenCryptoFactory} wraps each file's data keys with a master key
 * named by its id ({@code backup-YYYY-MM-DD-...}); this client hands it the master key bytes, and
 * the wrapping is done locally (AES-GCM, {@link LocalWrapKmsClient}). The keys come from the Hadoop
 * property {@value #KEYS_PROPERTY} ({@code "<key id>:<base64>"}, comma-separated), which wasure sets
 * on the session's Hadoop configuration only while it writes or reads a backup and removes right
 * after: the key store (jobs/keys.py) stays the only place a backup key lives. Parquet ships a client
 * like this one only in its test jar ({@code InMemoryKMS}).
 *
 * <p>An unknown key id is refused naming the id, never key material; {@link #toString()} withholds
 * the keys too.
 */
public final class BackupKeyKms extends LocalWrapKmsClient {
    public static final String KEYS_PROPERTY = "wasure.backup.master.keys";

    private final Map<String, byte[]> masterKeys = new HashMap<>();

    @Override
    protected void initializeInternal() throws KeyAccessDeniedException {
        masterKeys.clear();
        String list = hadoopConfiguration.getTrimmed(KEYS_PROPERTY, "");
        for (String entry : list.split(",")) {
            if (entry.isEmpty()) {
                continue;
            }
            int colon = entry.lastIndexOf(':');
            if (colon <= 0) {
                throw new IllegalArgumentException("malformed entry in " + KEYS_PROPERTY + " (expected <key id>:<base64>)");
            }
            String keyId = entry.substring(0, colon).trim();
            masterKeys.put(keyId, Base64.getDecoder().decode(entry.substring(colon + 1).trim()));
        }
    }

    @Override
    protected byte[] getMasterKeyFromServer(String masterKeyIdentifier) throws KeyAccessDeniedException {
        byte[] key = masterKeys.get(masterKeyIdentifier);
        if (key == null) {
            throw new KeyAccessDeniedException("backup key " + masterKeyIdentifier + " is not available to this read or write");
        }
        return key.clone();
    }

    @Override
    public String toString() {
        return "BackupKeyKms(" + masterKeys.size() + " key(s), material withheld)";
    }
}

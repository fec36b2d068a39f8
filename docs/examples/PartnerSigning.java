// How a partner signs a message (docs/partners.md, section 2). The file is ASCII: it compiles whatever the locale.
// Java 15 or later (Ed25519 is in the JDK); no other library. Compile and run:
//   javac PartnerSigning.java && java PartnerSigning
// It signs the guide's worked example (section 2.6) and prints the three headers.

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;

public final class PartnerSigning {
    /** The PKCS#8 DER prefix of an Ed25519 private key: the 32 raw private bytes follow it. */
    private static final byte[] PKCS8_ED25519_PREFIX = HexFormat.of().parseHex("302e020100300506032b657004220420");

    private final String keyId;
    private final PrivateKey privateKey;

    /** keyId: e.g. "his:H61010300001:2026-11"; rawPrivateKey: the 32 raw bytes of the Ed25519 private key. */
    public PartnerSigning(String keyId, byte[] rawPrivateKey) throws GeneralSecurityException {
        if (rawPrivateKey.length != 32) {
            throw new IllegalArgumentException("an Ed25519 private key is 32 bytes");
        }
        byte[] der = new byte[PKCS8_ED25519_PREFIX.length + rawPrivateKey.length];
        System.arraycopy(PKCS8_ED25519_PREFIX, 0, der, 0, PKCS8_ED25519_PREFIX.length);
        System.arraycopy(rawPrivateKey, 0, der, PKCS8_ED25519_PREFIX.length, rawPrivateKey.length);
        this.privateKey = KeyFactory.getInstance("Ed25519").generatePrivate(new PKCS8EncodedKeySpec(der));
        this.keyId = keyId;
    }

    /** "fma-sig-v1\n" + topic + "\n" + key (nothing when null) + "\n" + key id + "\n" + value. */
    public byte[] signedBytes(String topic, byte[] key, byte[] value) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes("fma-sig-v1\n".getBytes(StandardCharsets.UTF_8));
        out.writeBytes(topic.getBytes(StandardCharsets.UTF_8));
        out.write('\n');
        if (key != null) {
            out.writeBytes(key);
        }
        out.write('\n');
        out.writeBytes(keyId.getBytes(StandardCharsets.UTF_8));
        out.write('\n');
        out.writeBytes(value);
        return out.toByteArray();
    }

    /** The three headers of a signed message. Sign the very bytes you send: serialize once. */
    public Map<String, byte[]> headers(String topic, byte[] key, byte[] value) throws GeneralSecurityException {
        Signature ed25519 = Signature.getInstance("Ed25519");
        ed25519.initSign(privateKey);
        ed25519.update(signedBytes(topic, key, value));
        String signature = Base64.getEncoder().encodeToString(ed25519.sign());
        Map<String, byte[]> headers = new LinkedHashMap<>();
        headers.put("x-signer", keyId.getBytes(StandardCharsets.UTF_8));
        headers.put("x-signature-alg", "ed25519".getBytes(StandardCharsets.UTF_8));
        headers.put("x-signature", signature.getBytes(StandardCharsets.UTF_8));
        return headers;
    }

    public static void main(String[] args) throws Exception {
        // THE GUIDE'S EXAMPLE KEY, published for this example: never sign anything real with it.
        byte[] examplePrivateKey = Base64.getDecoder().decode("f0D2v10ZFHfzQnIczs/hfUCTf31W6EekDHBJVDunMsg=");
        PartnerSigning signing = new PartnerSigning("his:H61010300001:2026-11", examplePrivateKey);

        String topic = "his.charges";
        byte[] key = "610103198809210171".getBytes(StandardCharsets.UTF_8);
        // The patient name (two Chinese characters) is written as Unicode escapes so that the source file's encoding does not matter.
        byte[] value = """
            {"event_id":"d3c9a2b4-3f4e-4e77-9c32-2026112000d1","event_type":"ChargeSubmitted","schema_version":1,\
            "occurred_at":"2026-11-20T10:15:02+08:00","payload":{"charge_id":"MZ20261120-0001",\
            "institution_code":"H61010300001","institution_region":"610100","patient_id":"610103198809210171",\
            "patient_name":"\u674e\u660e","code_holder_id":"610103198809210171","presented_via":"own_device",\
            "visit_kind":"outpatient","total":"300.00","fund_paid":"180.00","individual_borne":"120.00",\
            "charged_at":"2026-11-20T10:15:00+08:00"}}""".getBytes(StandardCharsets.UTF_8);

        Map<String, byte[]> headers = signing.headers(topic, key, value);
        for (Map.Entry<String, byte[]> header : headers.entrySet()) {
            System.out.println(header.getKey() + ": " + new String(header.getValue(), StandardCharsets.UTF_8));
        }
        // With the Kafka client (org.apache.kafka:kafka-clients), the same headers on the record:
        //   ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, key, value);
        //   headers.forEach((name, bytes) -> record.headers().add(name, bytes));
        //   producer.send(record);
    }
}

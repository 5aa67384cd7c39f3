//! Signatures in the formats cosign reads, made and checked without a network: the "simple
//! signing" payload that names an image's digest, signed with ECDSA P-256 over SHA-256 (as
//! `cosign sign --key` does; deterministic, RFC 6979, so a re-release signs the same bytes), and
//! DSSE envelopes of in-toto statements (what `cosign attest` writes). Keys are PEM: PKCS#8 or
//! SEC1 private keys, SubjectPublicKeyInfo public keys.

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};

use crate::image::oci::Digest;

/// The media type of a simple signing payload, on the layer of a `.sig` manifest.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation that carries the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A private key that signs; never printed (its Debug says nothing of it).
pub struct Key(SigningKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A PEM private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`), P-256; or cosign's
    /// encrypted `cosign.key`, opened with `password` (COSIGN_PASSWORD).
    pub fn from_pem(pem: &str, password: Option<&str>) -> Result<Key> {
        if let Ok(key) = SigningKey::from_pkcs8_pem(pem) {
            return Ok(Key(key));
        }
        if let Ok(secret) = p256::SecretKey::from_sec1_pem(pem) {
            return Ok(Key(SigningKey::from(secret)));
        }
        if let Some(body) = encrypted_body(pem) {
            let password = password.context("the signing key is cosign's encrypted cosign.key: set COSIGN_PASSWORD to its password")?;
            let der = decrypt_cosign_key(&body, password)?;
            return Ok(Key(SigningKey::from_pkcs8_der(&der).context("the decrypted cosign.key is not a PKCS#8 ECDSA P-256 key")?));
        }
        bail!("the signing key is not a PEM ECDSA P-256 private key (PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY`, or cosign's encrypted cosign.key): make one with `cosign generate-key-pair` or `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt`")
    }

    /// The base64 DER signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        let signature: Signature = self.0.sign(message);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }
}

/// The base64 body of cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` (or older `ENCRYPTED COSIGN
/// PRIVATE KEY`) PEM block, decoded.
fn encrypted_body(pem: &str) -> Option<Vec<u8>> {
    let begin = pem.lines().position(|line| line.starts_with("-----BEGIN ENCRYPTED") && line.ends_with("PRIVATE KEY-----"))?;
    let body: String = pem.lines().skip(begin + 1).take_while(|line| !line.starts_with("-----END")).collect();
    base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()
}

/// Opens cosign's encrypted key: a JSON document whose `ciphertext` is the PKCS#8 key sealed with
/// NaCl's secretbox under a key scrypt derives from the password (`kdf`), with `cipher.nonce`.
fn decrypt_cosign_key(document: &[u8], password: &str) -> Result<Vec<u8>> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let document: serde_json::Value = serde_json::from_slice(document).context("the encrypted cosign.key does not hold cosign's JSON")?;
    let decode = |value: &serde_json::Value, what: &str| -> Result<Vec<u8>> {
        let text = value.as_str().with_context(|| format!("the encrypted cosign.key has no {what}"))?;
        base64::engine::general_purpose::STANDARD.decode(text).with_context(|| format!("the {what} of cosign.key is not base64"))
    };
    let kdf = &document["kdf"];
    if kdf["name"] != "scrypt" || document["cipher"]["name"] != "nacl/secretbox" {
        bail!("the encrypted cosign.key uses {} and {}, where scrypt and nacl/secretbox are read", kdf["name"], document["cipher"]["name"]);
    }
    let parameter = |name: &str| kdf["params"][name].as_u64().with_context(|| format!("the encrypted cosign.key has no scrypt {name}"));
    let n = parameter("N")?;
    if !n.is_power_of_two() || n < 2 {
        bail!("the scrypt N of cosign.key ({n}) is not a power of two");
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, u32::try_from(parameter("r")?)?, u32::try_from(parameter("p")?)?, 32)
        .map_err(|err| anyhow::anyhow!("the scrypt parameters of cosign.key are out of range: {err}"))?;
    let mut derived = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), &decode(&kdf["salt"], "salt")?, &params, &mut derived)
        .map_err(|err| anyhow::anyhow!("cannot derive the key of cosign.key: {err}"))?;
    let nonce = decode(&document["cipher"]["nonce"], "nonce")?;
    if nonce.len() != 24 {
        bail!("the nonce of cosign.key is not 24 bytes");
    }
    let cipher = crypto_secretbox::XSalsa20Poly1305::new((&derived).into());
    cipher
        .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), decode(&document["ciphertext"], "ciphertext")?.as_slice())
        .map_err(|_| anyhow::anyhow!("COSIGN_PASSWORD does not open cosign.key: check the password"))
}

/// A public key that checks signatures.
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_pem(pem: &str) -> Result<PublicKey> {
        let key =
            VerifyingKey::from_public_key_pem(pem).context("the key is not a PEM ECDSA P-256 public key (`PUBLIC KEY`, as cosign.pub)")?;
        Ok(PublicKey(key))
    }

    /// Whether `signature` (base64 DER, as cosign writes it) signs `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
        let Ok(signature) = DerSignature::try_from(der.as_slice()) else { return false };
        self.0.verify(message, &signature).is_ok()
    }
}

/// The simple signing payload cosign signs for `digest` of the image at `reference`
/// (`registry/repository`), byte for byte as cosign writes it.
pub fn simple_signing_payload(reference: &str, digest: &Digest) -> Vec<u8> {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest.as_str()},
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    serde_json::to_vec(&payload).expect("JSON values serialise")
}

/// The digest and reference a simple signing payload names.
pub fn read_payload(payload: &[u8]) -> Result<(String, Digest)> {
    let value: serde_json::Value = serde_json::from_slice(payload).context("the signed payload is not JSON")?;
    let critical = &value["critical"];
    if critical["type"] != "cosign container image signature" {
        bail!("the signed payload is not a cosign container image signature");
    }
    let digest = critical["image"]["docker-manifest-digest"].as_str().context("the signed payload names no image digest")?;
    let reference = critical["identity"]["docker-reference"].as_str().unwrap_or_default();
    let digest = digest.parse().map_err(|_| anyhow::anyhow!("the signed payload names no valid digest"))?;
    Ok((reference.to_string(), digest))
}

/// DSSE's pre-authentication encoding: what an envelope's signature signs.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoded = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    encoded.extend_from_slice(payload);
    encoded
}

/// A DSSE envelope of an in-toto statement, signed with `key`.
pub fn dsse_envelope(statement: &[u8], key: &Key) -> Vec<u8> {
    let envelope = serde_json::json!({
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64::engine::general_purpose::STANDARD.encode(statement),
        "signatures": [{"keyid": "", "sig": key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, statement))}],
    });
    serde_json::to_vec(&envelope).expect("JSON values serialise")
}

/// The statement of a DSSE envelope whose signature `key` verifies.
pub fn open_envelope(envelope: &[u8], key: &PublicKey) -> Result<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(envelope).context("the attestation is not a DSSE envelope")?;
    let payload_type = value["payloadType"].as_str().context("the DSSE envelope has no payloadType")?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(value["payload"].as_str().context("the DSSE envelope has no payload")?)
        .context("the DSSE payload is not base64")?;
    let signed = pae(payload_type, &payload);
    let verified = value["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|entry| entry["sig"].as_str().is_some_and(|sig| key.verifies(&signed, sig)));
    if !verified {
        bail!("no signature of the DSSE envelope verifies with the key");
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway P-256 key pair (openssl ecparam -name prime256v1 -genkey | openssl pkcs8 -topk8 -nocrypt).
    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglXUVJTmlUHeWUgda\n86liixvMX4VAYOklGPDgHHm1OVyhRANCAASwAyTaX72+RVWfckwCKVQJp7Xdnhbx\nAbot/4aGHsfHrALhnSjp1jE/+eto5k+EeQNwE9LoAGgv//j08lVGdTvK\n-----END PRIVATE KEY-----\n";

    fn public_of(key: &Key) -> PublicKey {
        PublicKey(*key.0.verifying_key())
    }

    #[test]
    fn payloads_are_signed_as_cosign_signs_them_and_a_changed_byte_fails() {
        let key = Key::from_pem(PRIVATE, None).unwrap();
        let digest = Digest::of(b"index");
        let payload = simple_signing_payload("127.0.0.1:5000/acme/prod", &digest);
        expect_test::expect![[r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/acme/prod"},"image":{"docker-manifest-digest":"sha256:1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6"},"type":"cosign container image signature"},"optional":null}"#]]
        .assert_eq(std::str::from_utf8(&payload).unwrap());
        let signature = key.sign(&payload);
        assert_eq!(signature, key.sign(&payload), "deterministic (RFC 6979)");
        assert!(public_of(&key).verifies(&payload, &signature));
        let mut tampered = payload.clone();
        tampered[20] ^= 1;
        assert!(!public_of(&key).verifies(&tampered, &signature));
        assert_eq!(read_payload(&payload).unwrap(), ("127.0.0.1:5000/acme/prod".to_string(), digest));
        assert!(format!("{key:?}") == "Key(..)", "a key never prints");
    }

    #[test]
    fn envelopes_open_only_with_their_key() {
        let key = Key::from_pem(PRIVATE, None).unwrap();
        let envelope = dsse_envelope(b"{\"_type\":\"statement\"}", &key);
        assert_eq!(open_envelope(&envelope, &public_of(&key)).unwrap(), b"{\"_type\":\"statement\"}");
        let other = Key(SigningKey::from_slice(&[7; 32]).unwrap());
        assert!(open_envelope(&envelope, &public_of(&other)).is_err());
    }
}

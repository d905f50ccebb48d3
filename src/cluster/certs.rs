//! Certificate creation for the cluster's mutual TLS (`presenced cert create-ca|create-node`).
//!
//! Owns the file layout of a certificate directory: `ca.crt` + `ca.key` (the cluster CA) and
//! `<id>.crt` + `<id>.key` per node, all PEM. Invariants:
//! * nothing is ever overwritten: an existing target file is an error, so re-running a command
//!   cannot orphan every node certificate by replacing the CA key;
//! * a node certificate names its node id as its only DNS subject alternative name and as its
//!   common name, carries both TLS client and server usages (every node dials and accepts), and
//!   is checked against `ca.crt` with the same verifier the cluster uses before it is written,
//!   so a node file that exists is one the cluster accepts;
//! * private keys are written with mode 0600 on Unix.
//!
//! `create_node` rebuilds the issuer from `ca.key` and the fixed CA subject written by
//! [`create_ca`]; a `ca.crt` made by another tool is detected by the verification step and
//! refused ([`CertError::CaMismatch`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::tls::{self, TlsError};

/// The common name of every CA made by [`create_ca`]; `create_node` relies on it.
const CA_COMMON_NAME: &str = "presenced cluster CA";
/// Validity of the CA, in days from today.
const CA_DAYS: i64 = 20 * 365;
/// Validity of a node certificate, in days from today.
const NODE_DAYS: i64 = 10 * 365;

/// Why a certificate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A target file exists already (nothing was written).
    #[error("{0} exists already; refusing to overwrite it")]
    Exists(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The node id cannot be a certificate DNS name (letters, digits, `-`, `.`).
    #[error(
        "node id {0:?} is not usable as a certificate name (use letters, digits, '-' and '.')"
    )]
    BadNodeId(String),
    /// rcgen refused to build or parse a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The new node certificate does not verify against `ca.crt` (the CA files were not made
    /// by `create-ca`, or `ca.key` does not belong to `ca.crt`).
    #[error("the node certificate does not verify against {ca}: {reason}")]
    CaMismatch {
        /// The CA certificate file.
        ca: PathBuf,
        /// The verifier's reason.
        reason: String,
    },
    /// Loading the written PEM files back failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The files written by [`create_ca`] or [`create_node`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Creates the cluster CA in `dir` (created if missing): `ca.crt` and `ca.key`.
pub fn create_ca(dir: &Path) -> Result<CertFiles, CertError> {
    let files = CertFiles {
        cert: dir.join("ca.crt"),
        key: dir.join("ca.key"),
    };
    refuse_existing(&files)?;
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    create_dir(dir)?;
    write_new(&files.key, key.serialize_pem().as_bytes(), true)?;
    write_new(&files.cert, cert.pem().as_bytes(), false)?;
    Ok(files)
}

/// Creates `<id>.crt` and `<id>.key` in `dir`, signed by the CA in `dir/ca.crt` + `dir/ca.key`.
pub fn create_node(dir: &Path, id: &str) -> Result<CertFiles, CertError> {
    if !tls::is_valid_node_name(id) {
        return Err(CertError::BadNodeId(id.to_string()));
    }
    let files = CertFiles {
        cert: dir.join(format!("{id}.crt")),
        key: dir.join(format!("{id}.key")),
    };
    refuse_existing(&files)?;
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let ca_key_pem = read_text(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let key = KeyPair::generate()?;
    let cert = node_params(id)?.signed_by(&key, &issuer)?;

    // Verify before writing anything: the CA on disk must accept this certificate.
    let roots = tls::load_roots(&ca_cert_path)?;
    tls::verify_node_cert(&roots, cert.der(), id).map_err(|reason| CertError::CaMismatch {
        ca: ca_cert_path.clone(),
        reason,
    })?;

    write_new(&files.key, key.serialize_pem().as_bytes(), true)?;
    write_new(&files.cert, cert.pem().as_bytes(), false)?;
    Ok(files)
}

/// The CA's parameters: fixed subject, so `create_node` can rebuild the issuer from the key.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_DAYS);
    params
}

fn node_params(id: &str) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(vec![id.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_DAYS);
    Ok(params)
}

/// Valid from yesterday (a day of slack for clock skew between nodes) to `days` from today.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(today - 1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(today + days);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

fn refuse_existing(files: &CertFiles) -> Result<(), CertError> {
    for p in [&files.cert, &files.key] {
        if p.exists() {
            return Err(CertError::Exists(p.clone()));
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a new file (never replacing one), private keys readable by the owner only.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), CertError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn ca_then_nodes_verify_and_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let ca = create_ca(dir.path()).unwrap();
        assert!(ca.cert.ends_with("ca.crt") && ca.key.ends_with("ca.key"));
        let n1 = create_node(dir.path(), "node-1").unwrap();
        assert_eq!(n1.cert, dir.path().join("node-1.crt"));
        let roots = tls::load_roots(&ca.cert).unwrap();
        let (chain, _key) = tls::load_identity(&n1.cert, &n1.key).unwrap();
        assert_eq!(tls::verify_node_cert(&roots, &chain[0], "node-1"), Ok(()));
        // The certificate names node-1, not node-2.
        assert!(tls::verify_node_cert(&roots, &chain[0], "node-2").is_err());
        // Nothing is overwritten.
        assert!(matches!(create_ca(dir.path()), Err(CertError::Exists(_))));
        let again = create_node(dir.path(), "node-1");
        assert!(matches!(again, Err(CertError::Exists(p)) if p == n1.cert));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&n1.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn node_under_foreign_ca_files_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        create_ca(a.path()).unwrap();
        create_ca(b.path()).unwrap();
        // ca.key of A with ca.crt of B: the new certificate does not verify, nothing written.
        fs::copy(b.path().join("ca.crt"), a.path().join("other.crt")).unwrap();
        fs::remove_file(a.path().join("ca.crt")).unwrap();
        fs::rename(a.path().join("other.crt"), a.path().join("ca.crt")).unwrap();
        let got = create_node(a.path(), "node-1");
        assert!(matches!(got, Err(CertError::CaMismatch { .. })), "{got:?}");
        assert!(!a.path().join("node-1.key").exists());
    }

    #[test]
    fn bad_ids_and_missing_ca() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["", "node 1", "../x", "-x", "a/b"] {
            assert!(
                matches!(create_node(dir.path(), id), Err(CertError::BadNodeId(_))),
                "{id:?}"
            );
        }
        let got = create_node(dir.path(), "node-1");
        assert!(matches!(got, Err(CertError::Io { ref path, .. }) if path.ends_with("ca.key")));
    }
}

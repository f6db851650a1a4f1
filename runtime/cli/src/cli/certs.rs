//! `cella cluster certs --out DIR --nodes N`: a certificate authority and certificates signed by
//! it for a dev or test cluster (rcgen, ECDSA P-256): `ca.pem` and `ca-key.pem`; for each node
//! `node{i}.pem` and `node{i}-key.pem`, naming `127.0.0.1` and `localhost`, usable as a server
//! certificate (`cella serve --tls-cert`) and as a client certificate (mutual TLS between
//! peers). No client certificate is made: the CA's certificates are node certificates (a node
//! accepts any certificate it signed as a peer), and clients prove themselves with tokens. Keys
//! are written readable by their owner only. Not for production: a real deployment's certificates name its hosts
//! and come from its own CA.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The names every node certificate carries.
const NODE_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Writes the CA and `nodes` node certificates into `out`.
pub(super) fn generate(out: &Path, nodes: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let ca_key = KeyPair::generate().context("cannot generate the CA's key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("the CA's parameters")?;
    ca.distinguished_name = name("Cella dev CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca);
    let ca_cert = ca
        .self_signed(&ca_key)
        .context("cannot sign the CA's certificate")?;
    write(out, "ca.pem", &ca_cert.pem(), false)?;
    write(out, "ca-key.pem", &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |file: &str, common_name: &str, names: &[&str], usages| {
        let key = KeyPair::generate()
            .with_context(|| format!("cannot generate the key of {file}.pem"))?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)
            .with_context(|| format!("the parameters of {file}.pem"))?;
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("cannot sign {file}.pem"))?;
        write(out, &format!("{file}.pem"), &cert.pem(), false)?;
        write(out, &format!("{file}-key.pem"), &key.serialize_pem(), true)
    };
    for i in 1..=nodes {
        leaf(
            &format!("node{i}"),
            &format!("cella node {i}"),
            &NODE_NAMES,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
    }
    println!(
        "wrote ca.pem, ca-key.pem{} to {}\nnode certificates \
         name {}; serve with --tls-cert {dir}/node1.pem --tls-key {dir}/node1-key.pem, trust \
         with --ca {dir}/ca.pem (dev and tests only)",
        match nodes {
            0 => String::new(),
            1 => ", node1.pem and node1-key.pem".into(),
            n => format!(", node1..{n}.pem with their -key.pem"),
        },
        out.display(),
        NODE_NAMES.join(" and "),
        dir = out.display(),
    );
    Ok(())
}

/// A distinguished name of just a common name.
fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Valid from the start of last year to ten years on: whole years from the system clock, so no
/// calendar arithmetic is needed and a slightly wrong clock does not matter.
fn set_validity(params: &mut CertificateParams) {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 365.2425 days a year.
    let year = 1970 + i32::try_from(seconds / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
}

/// Writes `text` to `dir/file`; a `secret` (a private key) readable by its owner only.
fn write(dir: &Path, file: &str, text: &str, secret: bool) -> anyhow::Result<()> {
    let path = dir.join(file);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut handle = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // A key file that existed keeps its mode through `open`: set it.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        handle
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    std::io::Write::write_all(&mut handle, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

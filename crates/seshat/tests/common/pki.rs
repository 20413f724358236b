//! A throwaway PKI made with the `openssl` CLI, for the TLS tests.

use std::path::PathBuf;
use std::process::Command;

/// A throwaway PKI: CAs, and server and client certificates they sign.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed CA: `NAME.crt`, `NAME.key`.
    pub fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// A certificate for 127.0.0.1/localhost signed by `ca`: `NAME.crt`,
    /// `NAME.key`.
    pub fn leaf(&self, ca: &str, name: &str) {
        self.leaf_with(ca, name, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    }

    /// A node certificate for mutual TLS between nodes, signed by `ca`:
    /// the cluster-wide name `seshat-node`, server and client use.
    pub fn node(&self, ca: &str, name: &str) {
        self.leaf_with(
            ca,
            name,
            "subjectAltName=DNS:seshat-node\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
    }

    /// A P-256 key and a certificate request for it, CN `name`:
    /// `NAME.key`, `NAME.csr`.
    fn key_and_csr(&self, name: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
    }

    /// A certificate signed by `ca` with the X.509 v3 extensions `ext`
    /// (`openssl x509 -extfile` syntax): `NAME.crt`, `NAME.key`.
    pub fn leaf_with(&self, ca: &str, name: &str, ext: &str) {
        self.key_and_csr(name);
        std::fs::write(self.path(&format!("{name}.ext")), ext).unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// A certificate for 127.0.0.1/localhost signed by `ca` that expired
    /// long ago (valid only on 1 January 2020): `NAME.crt`, `NAME.key`.
    /// `openssl x509` (3.0) sets no past dates, `openssl ca` does, with a
    /// minimal CA configuration and database in the directory.
    pub fn expired_leaf(&self, ca: &str, name: &str) {
        self.key_and_csr(name);
        std::fs::write(
            self.path(&format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        std::fs::write(
            self.path("past-ca.cnf"),
            "[ca]\ndefault_ca = past\n\
             [past]\ndatabase = past-index.txt\nnew_certs_dir = .\nserial = past-serial\n\
             default_md = sha256\npolicy = any\nunique_subject = no\n\
             [any]\ncommonName = supplied\n",
        )
        .unwrap();
        if !self.path("past-serial").exists() {
            std::fs::write(self.path("past-index.txt"), "").unwrap();
            std::fs::write(self.path("past-serial"), "1000\n").unwrap();
        }
        self.openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            "past-ca.cnf",
            "-cert",
            &format!("{ca}.crt"),
            "-keyfile",
            &format!("{ca}.key"),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-extfile",
            &format!("{name}.ext"),
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// The usual set: CA `ca`, server `server`, client `client`.
    pub fn standard() -> Pki {
        let pki = Pki::new();
        pki.ca("ca");
        pki.leaf("ca", "server");
        pki.leaf("ca", "client");
        pki
    }

    pub fn server_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.s("server.crt"),
            "--tls-key-file".into(),
            self.s("server.key"),
        ]
    }
}

//! Connection strings: parsing, scrubbing, TLS and network options.

use super::*;

fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
    ConnInfo::parse_with_env(s, |_| None)
}

#[test]
fn uri_with_everything() {
    let c = parse(
        "postgresql://pg%40roar:p%3Aw%2Fd@db.example.com:6543/app?sslmode=verify-full\
         &sslrootcert=/etc/ca.pem&application_name=feed&options=-c%20work_mem%3D4MB",
    )
    .unwrap();
    assert_eq!(c.user, "pg@roar");
    assert_eq!(c.password, "p:w/d");
    assert_eq!((c.host.as_str(), c.port), ("db.example.com", 6543));
    assert_eq!(c.dbname, "app");
    assert_eq!(c.sslmode, SslMode::VerifyFull);
    assert_eq!(c.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(
        c.session_options(),
        format!("-c work_mem=4MB {PINNED_OPTIONS}")
    );
    let r = c.replication_config("s", "p");
    assert_eq!(r.tls.mode, WireSslMode::VerifyFull);
    assert_eq!(r.application_name.as_deref(), Some("feed"));
    assert!(!format!("{c:?}").contains("p:w/d"));
}

#[test]
fn key_values_with_quotes_and_defaults() {
    let c =
        parse(r"host=/run/pg port = 5433 user=roar password='it\'s secret' dbname=app").unwrap();
    assert_eq!(c.host, "/run/pg");
    assert!(c.is_unix_socket());
    assert_eq!(c.port, 5433);
    assert_eq!(c.password, "it's secret");
    assert_eq!(c.sslmode, SslMode::Prefer);
    let c = parse("host=h user=u").unwrap();
    assert_eq!((c.port, c.dbname.as_str()), (5432, "u"));
    assert_eq!(c.session_options(), PINNED_OPTIONS);
}

#[test]
fn ipv6_hosts_and_environment_fallbacks() {
    let c = parse("postgres://[::1]:7000/x").unwrap();
    assert_eq!((c.host.as_str(), c.port), ("::1", 7000));
    let env = |k: &str| match k {
        "PGPASSWORD" => Some("from-env".to_owned()),
        "PGUSER" => Some("envuser".to_owned()),
        "PGSSLMODE" => Some("require".to_owned()),
        _ => None,
    };
    let c = ConnInfo::parse_with_env("postgresql://h/db", env).unwrap();
    assert_eq!(c.password, "from-env");
    assert_eq!(c.user, "envuser");
    assert_eq!(c.sslmode, SslMode::Require);
    // What the string says wins over the environment.
    let c = ConnInfo::parse_with_env("postgresql://u:pw@h/db?sslmode=disable", env).unwrap();
    assert_eq!((c.password.as_str(), c.sslmode), ("pw", SslMode::Disable));
}

#[test]
fn mistakes_are_errors() {
    assert_eq!(
        parse("host=h sslmod=require"),
        Err(ConnInfoError::UnknownKeyword("sslmod".into()))
    );
    assert!(matches!(
        parse("postgresql://h/db?sslmode=verify"),
        Err(ConnInfoError::BadValue { key: "sslmode", .. })
    ));
    assert!(matches!(
        parse("postgresql://a,b/db"),
        Err(ConnInfoError::MultipleHosts(_))
    ));
    assert!(matches!(
        parse("host=h port=99999"),
        Err(ConnInfoError::BadValue { key: "port", .. })
    ));
    assert!(matches!(parse("host"), Err(ConnInfoError::Syntax(_))));
    assert!(matches!(
        parse("password='open"),
        Err(ConnInfoError::Syntax(_))
    ));
    assert!(matches!(
        parse("postgresql://u:%zz@h/db"),
        Err(ConnInfoError::Syntax(_))
    ));
    // Ignored libpq keywords are accepted.
    assert!(parse("host=h target_session_attrs=any gssencmode=disable").is_ok());
    assert!(matches!(
        parse("host=h connect_timeout=soon"),
        Err(ConnInfoError::BadValue {
            key: "connect_timeout",
            ..
        })
    ));
    assert!(matches!(
        parse("host=h channel_binding=always"),
        Err(ConnInfoError::BadValue {
            key: "channel_binding",
            ..
        })
    ));
}

#[test]
fn errors_never_quote_the_password() {
    for (url, password) in [
        ("postgresql://u:se/cr3t@h/db", "se/cr3t"),
        ("postgresql://u:hunter2@h:99999/db", "hunter2"),
        ("postgresql://u:p%zzq@h/db", "p%zzq"),
        ("postgresql://u:s3cr?et@h/db", "s3cr?et"),
        ("postgresql://h/db?password=top%2Gsecret", "top%2Gsecret"),
        ("host=h password='sw0rd fish' port=x", "sw0rd fish"),
        ("host=h password=sw0rdfish bogus", "sw0rdfish"),
    ] {
        let err = parse(url).unwrap_err().to_string();
        assert!(!err.contains(password), "{url}: {err}");
        for piece in password.split(['/', '?', '%', ' ']).filter(|p| p.len() > 2) {
            assert!(!err.contains(piece), "{url}: {err} shows {piece:?}");
        }
    }
    // What is not secret is still named.
    let err = parse("postgresql://u:pw@h:99999/db")
        .unwrap_err()
        .to_string();
    assert!(err.contains("99999"), "{err}");
}

#[test]
fn timeouts_and_keepalives_follow_libpq() {
    let c = parse("host=h").unwrap();
    assert_eq!(c.net, NetOptions::default());
    assert_eq!(c.net.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
    assert_eq!(c.net.dead_after(), None);
    let c = parse(
        "postgresql://h/db?connect_timeout=1&keepalives_idle=10&keepalives_interval=5\
         &keepalives_count=3&tcp_user_timeout=40000&channel_binding=require",
    )
    .unwrap();
    assert_eq!(c.net.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.net.dead_after(), Some(Duration::from_secs(25)));
    assert_eq!(c.channel_binding, ChannelBinding::Require);
    let c = parse("host=h connect_timeout=0 keepalives=0 tcp_user_timeout=9000").unwrap();
    assert_eq!(c.net.connect_timeout, None);
    assert!(!c.net.keepalives);
    assert_eq!(c.net.dead_after(), Some(Duration::from_secs(9)));
    let cfg = parse("host=h connect_timeout=7 keepalives_idle=11 tcp_user_timeout=500")
        .unwrap()
        .sql_config();
    assert_eq!(cfg.get_connect_timeout(), Some(&Duration::from_secs(7)));
    assert_eq!(cfg.get_keepalives_idle(), Duration::from_secs(11));
    assert_eq!(
        cfg.get_tcp_user_timeout(),
        Some(&Duration::from_millis(500))
    );
}

#[test]
fn require_auth_allows_cleartext_only_when_it_says_so() {
    let allows = |s: &str| parse(s).unwrap().allows_cleartext();
    assert!(!allows("host=h"));
    assert!(allows("host=h require_auth=password"));
    assert!(allows("host=h require_auth=scram-sha-256,password"));
    assert!(!allows("host=h require_auth=scram-sha-256"));
    assert!(allows("host=h require_auth=!md5"));
    assert!(!allows("host=h require_auth=!password,!md5"));
}

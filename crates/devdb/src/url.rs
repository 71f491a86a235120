//! Small helpers for PostgreSQL connection strings.

/// Percent-encodes `s` for use as a URL path segment.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `url` with its database replaced by `database`. Works on URLs
/// (`postgres://user@host:port/db?params`) and on key=value strings (`host=.. dbname=..`).
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        let escaped = database.replace('\\', r"\\").replace('\'', r"\'");
        return format!("{} dbname='{escaped}'", url.trim_end());
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let (main, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
    let host_start = main.rfind('@').map_or(0, |at| at + 1);
    let authority_end = main[host_start..]
        .find('/')
        .map_or(main.len(), |slash| host_start + slash);
    format!(
        "{head}{}/{}{query}",
        &main[..authority_end],
        encode(database)
    )
}

/// `url` with any password hidden, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return if url.contains("password") {
            "(connection string with a password)".to_owned()
        } else {
            url.to_owned()
        };
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_len].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{head}{}:***{}", &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgresql://h:1", "postgresql://h:1/x"),
            (
                "postgres://h?application_name=a",
                "postgres://h/x?application_name=a",
            ),
            (
                "postgres://u:p%2Fq@[::1]:5/",
                "postgres://u:p%2Fq@[::1]:5/x",
            ),
            ("postgres:///db?host=/tmp", "postgres:///x?host=/tmp"),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "x"), want, "{url}");
        }
        assert_eq!(
            with_database("host=h dbname=a", "x"),
            "host=h dbname=a dbname='x'"
        );
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode("callers_t_1"), "callers_t_1");
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn hides_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}

//! Where a store lives: parsing `--store` / `VOLLEY_STORE` values.
use std::path::PathBuf;

/// A parsed SQLite location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A private in-memory database (tests).
    Memory,
    /// A database file.
    File(PathBuf),
}

/// Parses `sqlite::memory:`, `sqlite://path`, `sqlite:path` or a plain path.
///
/// `sqlite:///abs/path` is the absolute path `/abs/path`; `sqlite://rel/path` is relative to the
/// current folder. The only query parameter accepted is `mode=rwc` (what volley does anyway).
pub(crate) fn parse(location: &str) -> Result<Location, String> {
    let trimmed = location.trim();
    if trimmed.is_empty() {
        return Err("empty store location".into());
    }
    let rest = if let Some(rest) = trimmed.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        rest
    } else if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(format!(
            "unsupported store scheme `{scheme}://` (this build supports sqlite only)"
        ));
    } else {
        // A plain path: taken as it is, `?` and all.
        return Ok(Location::File(PathBuf::from(trimmed)));
    };
    let path = match rest.split_once('?') {
        None => rest,
        Some((path, query)) => {
            for param in query.split('&').filter(|p| !p.is_empty()) {
                if param != "mode=rwc" {
                    return Err(format!(
                        "unsupported store URL parameter `{param}` (give a plain path or sqlite://path)"
                    ));
                }
            }
            path
        }
    };
    match path {
        "" => Err("the store URL names no file".into()),
        ":memory:" => Ok(Location::Memory),
        path => Ok(Location::File(PathBuf::from(path))),
    }
}

/// The location as shown in messages: a URL's password, if any, is replaced by `***`.
///
/// SQLite locations hold no credentials, but a mistyped `postgres://user:secret@host/db` must not
/// end up in an error message or a log.
pub(crate) fn redact(location: &str) -> String {
    let location = location.trim();
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => location.to_owned(),
        },
        None => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        assert_eq!(parse("sqlite::memory:"), Ok(Location::Memory));
        assert_eq!(parse("sqlite://:memory:"), Ok(Location::Memory));
        assert_eq!(
            parse("sqlite://.volley/volley.db"),
            Ok(Location::File(".volley/volley.db".into()))
        );
        assert_eq!(
            parse("sqlite:///tmp/v.db?mode=rwc"),
            Ok(Location::File("/tmp/v.db".into()))
        );
        assert_eq!(parse("sqlite:v.db"), Ok(Location::File("v.db".into())));
        assert_eq!(parse("data/v.db"), Ok(Location::File("data/v.db".into())));
        assert!(parse("").is_err());
        assert!(parse("sqlite://").is_err());
        assert!(parse("sqlite://v.db?mode=ro").is_err());
        assert!(parse("postgres://u:p@h/db").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://.volley/v.db"), "sqlite://.volley/v.db");
        assert_eq!(redact("plain/path.db"), "plain/path.db");
    }
}

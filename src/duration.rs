//! Durations as people write them in requests and flags: `30s`, `15m`, `1h`, `7d`,
//! `1h 30m` (humantime's syntax), within bounds, with errors that name the field.

use std::time::Duration;

use crate::problem::Problem;

/// The longest duration any field accepts: ten years.
pub const MAX: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Parses `value` for `field`: more than zero, at most [`MAX`].
pub fn parse(field: &str, value: &str) -> Result<Duration, Problem> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        Problem::bad_field(
            field,
            format!("{field} {value:?} is not a duration like \"30m\", \"1h\" or \"7d\": {e}"),
        )
    })?;
    if d.is_zero() {
        return Err(Problem::bad_field(
            field,
            format!("{field} must be longer than zero"),
        ));
    }
    if d > MAX {
        return Err(Problem::bad_field(
            field,
            format!("{field} must be at most 3650 days"),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_spellings_and_names_the_field_otherwise() {
        assert_eq!(parse("x", "1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("x", "30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("x", "7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse("x", " 1s ").unwrap(), Duration::from_secs(1));
        assert_eq!(parse("x", "1h 30m").unwrap(), Duration::from_secs(5400));
        for bad in [
            "",
            "1",
            "h",
            "-1h",
            "1 parsec",
            "0s",
            "3651d",
            "99999999999999999999d",
        ] {
            let e = parse("expires_in", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("expires_in"), "{bad:?}");
        }
    }
}

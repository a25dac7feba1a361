//! Sizes in PostgreSQL's units: `5GB` is 5 × 1024³ bytes.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("is empty; give a size such as 5GB, 500MB, 1TB or a number of bytes")]
    Empty,
    #[error("{0:?} is not a size: use a positive whole number with an optional unit B, kB, MB, GB or TB (e.g. 5GB)")]
    Invalid(String),
    #[error("{0:?} has an unknown unit; use B, kB, MB, GB or TB")]
    Unit(String),
    #[error("must be greater than zero")]
    Zero,
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses `5GB`, `500MB`, `1TB`, `64kB` or plain bytes (`1048576`) into bytes.
/// Units are case-insensitive and may be separated by a space, like PostgreSQL's.
pub fn parse_size(text: &str) -> Result<i64, SizeError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::Invalid(text.to_string()));
    }
    let number: i64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    let multiplier: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        "tb" | "t" => 1 << 40,
        u if u.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err(SizeError::Unit(text.to_string()))
        }
        _ => return Err(SizeError::Invalid(text.to_string())),
    };
    let bytes = number
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))?;
    if bytes == 0 {
        return Err(SizeError::Zero);
    }
    Ok(bytes)
}

/// The largest unit that divides the size exactly: 5368709120 -> "5GB".
pub fn format_size(bytes: i64) -> String {
    for (unit, m) in [
        ("TB", 1i64 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("kB", 1 << 10),
    ] {
        if bytes % m == 0 && bytes >= m {
            return format!("{}{unit}", bytes / m);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_units() {
        assert_eq!(parse_size("5GB"), Ok(5 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("500MB"), Ok(500 << 20));
        assert_eq!(parse_size("1TB"), Ok(1 << 40));
        assert_eq!(parse_size("64kB"), Ok(64 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("5 gb"), Ok(5 << 30));
    }

    #[test]
    fn refuses_nonsense() {
        assert_eq!(parse_size("5XB"), Err(SizeError::Unit("5XB".into())));
        assert_eq!(parse_size("-1GB"), Err(SizeError::Invalid("-1GB".into())));
        assert_eq!(parse_size("0"), Err(SizeError::Zero));
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("1.5GB"), Err(SizeError::Invalid("1.5GB".into())));
        assert!(matches!(
            parse_size("99999999999TB"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn formats_round_trip() {
        for s in ["5GB", "500MB", "1TB", "3kB", "7B"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
    }
}

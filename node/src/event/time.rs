//! `eventTime` → unix seconds. Accepts `YYYY-MM-DDThh:mm:ssZ`, with a fraction
//! (`.366`), and with a numeric offset (`+0000`, `+08:00`).

/// Unix time in seconds (with fraction), or `None` if the text is not a time.
pub fn parse_event_time(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() >= 5 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let digits: String = o[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            sign * (digits[0..2].parse::<i64>().ok()? * 3600
                + digits[2..4].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) as f64 + frac)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_variants() {
        assert_eq!(
            parse_event_time("2024-05-14T02:31:07Z"),
            Some(1_715_653_867.0)
        );
        assert_eq!(parse_event_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_event_time("2020-12-01T11:54:59.366+0000"),
            Some(1_606_823_699.366)
        );
        assert_eq!(
            parse_event_time("2024-05-14T10:31:07+08:00"),
            Some(1_715_653_867.0)
        );
        assert_eq!(
            parse_event_time("2024-05-14T02:31:07"),
            Some(1_715_653_867.0)
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-14T02:31:07Z",
            "2024-05-14T02:31:07Q",
            "2024-05-14T02:31:07.Z",
            "２０２４-05-14T02:31:07Z",
        ] {
            assert_eq!(parse_event_time(bad), None, "{bad:?}");
        }
    }
}

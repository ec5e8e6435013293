//! The little XML the S3 and STS answers need: the text of an element by
//! name, and entity references decoded. No parser: AWS's documents are
//! flat enough that every element Trail reads has a unique name where it
//! is looked for.

/// The texts of every `<tag>…</tag>` in `text`, in order.
pub(crate) fn elements<'t>(text: &'t str, tag: &str) -> impl Iterator<Item = &'t str> + 't {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = text;
    std::iter::from_fn(move || {
        let i = rest.find(&open)?;
        let after = &rest[i + open.len()..];
        let j = after.find(&close)?;
        rest = &after[j + close.len()..];
        Some(&after[..j])
    })
}

/// The text of the first `<tag>…</tag>` in `text`.
pub(crate) fn element<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    elements(text, tag).next()
}

/// XML character and entity references decoded.
pub(crate) fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after
            .find(';')
            .ok_or_else(|| format!("an unterminated reference in {s:?}"))?;
        let name = &after[..j];
        let c = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            n if n.starts_with("#x") => u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad reference &{n};"))?,
            n if n.starts_with('#') => n[1..]
                .parse()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad reference &{n};"))?,
            n => return Err(format!("unknown entity &{n};")),
        };
        out.push(c);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// An AWS XML error document's `Code` and `Message`: S3's `<Error>…`, STS's
/// `<ErrorResponse><Error>…`. Without a `Code` (an HTML page from a proxy,
/// an empty body), the status stands for it.
pub(crate) fn error_document(op: &'static str, status: u16, body: &[u8]) -> super::AwsError {
    let text = String::from_utf8_lossy(body);
    let error = element(&text, "Error").unwrap_or("");
    let read = |tag: &str| {
        element(error, tag)
            .map(|v| unescape(v.trim()).unwrap_or_else(|_| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let code = match read("Code") {
        c if c.is_empty() => status.to_string(),
        c => c,
    };
    super::AwsError::Status {
        op,
        status,
        code,
        message: read("Message"),
    }
}

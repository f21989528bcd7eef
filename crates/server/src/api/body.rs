//! Reading request bodies: bounded size, bounded JSON depth, known media types only.

use axum::body::Body;
use http::HeaderMap;
use serde_json::Value;

use super::status::ApiError;

/// Media types accepted for create and update.
pub const WRITE_TYPES: &[&str] = &["application/json", "application/yaml"];

/// The media type of the request without parameters, lower-cased.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_bounded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(ApiError::too_large(limit));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b.to_vec()),
        Err(e) => {
            // http-body-util's Limited reports the limit as the error's source.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(ApiError::too_large(limit))
            } else {
                Err(ApiError::bad_request(format!(
                    "reading the request body failed: {e}"
                )))
            }
        }
    }
}

/// Parses a JSON or YAML body into a value, after checking the nesting depth of JSON.
pub fn parse_object(bytes: &[u8], media: &str, max_depth: usize) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send the object as JSON",
        ));
    }
    match media {
        "application/json" | "" => {
            check_json_depth(bytes, max_depth)?;
            serde_json::from_slice(bytes).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            })
        }
        "application/yaml" => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            let value: Value = serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?;
            if depth(&value) > max_depth {
                return Err(depth_error(max_depth));
            }
            Ok(value)
        }
        other => Err(ApiError::unsupported_media(other, WRITE_TYPES)),
    }
}

fn depth_error(max: usize) -> ApiError {
    ApiError::bad_request(format!("the request body nests deeper than {max} levels"))
}

/// Scans JSON text for bracket depth without building anything, so that a hostile body is
/// refused before the parser recurses into it.
pub fn check_json_depth(bytes: &[u8], max: usize) -> Result<(), ApiError> {
    let mut level = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                level += 1;
                if level > max {
                    return Err(depth_error(max));
                }
            }
            b'}' | b']' => level = level.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scanner_counts_brackets_outside_strings() {
        assert!(check_json_depth(br#"{"a":{"b":[1,2,{"c":"[[[[[["}]}}"#, 4).is_ok());
        assert!(check_json_depth(br#"{"a":{"b":[{"c":1}]}}"#, 3).is_err());
        assert!(check_json_depth(br#"{"a":"\"{{{{"}"#, 1).is_ok());
    }
}

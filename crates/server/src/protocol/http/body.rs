//! Splitting an ingest request body into events: one JSON object, a JSON array of objects,
//! or NDJSON (one object per line). Objects are passed on as the client sent them, except
//! array elements, which are re-serialized.

use serde_json::Value;

/// `(key, value)` of each event; the key comes from the top-level field `key_field`.
pub type Events = Vec<(Option<Vec<u8>>, Vec<u8>)>;

pub fn split(body: &[u8], key_field: Option<&str>) -> Result<Events, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let trimmed = text.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('[') {
        let values: Vec<Value> =
            serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON array: {e}"))?;
        for (i, v) in values.into_iter().enumerate() {
            if !v.is_object() {
                return Err(format!("element {i} of the array is not a JSON object"));
            }
            let key = key_of(&v, key_field);
            out.push((key, serde_json::to_vec(&v).map_err(|e| e.to_string())?));
        }
        return Ok(out);
    }
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            // A pretty-printed single object spans lines.
            Err(_) if n == 0 => match serde_json::from_str::<Value>(text) {
                Ok(v) if v.is_object() => {
                    let key = key_of(&v, key_field);
                    return Ok(vec![(key, text.trim().as_bytes().to_vec())]);
                }
                Ok(_) => return Err("the body is not a JSON object".into()),
                Err(e) => return Err(format!("invalid JSON: {e}")),
            },
            Err(e) => return Err(format!("line {}: invalid JSON: {e}", n + 1)),
        };
        if !v.is_object() {
            return Err(format!("line {}: not a JSON object", n + 1));
        }
        out.push((key_of(&v, key_field), line.as_bytes().to_vec()));
    }
    Ok(out)
}

fn key_of(v: &Value, field: Option<&str>) -> Option<Vec<u8>> {
    match v.get(field?)? {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_array_and_ndjson() {
        assert_eq!(split(br#"{"a": 1}"#, None).unwrap().len(), 1);
        assert_eq!(split(b"{\n  \"a\": 1\n}\n", None).unwrap().len(), 1);
        let arr = split(br#"[{"id": 1}, {"id": "x"}]"#, Some("id")).unwrap();
        assert_eq!(arr[0].0.as_deref(), Some(b"1".as_slice()));
        assert_eq!(arr[1].0.as_deref(), Some(b"x".as_slice()));
        assert_eq!(split(b"{\"a\":1}\n\n{\"a\":2}\n", None).unwrap().len(), 2);
        assert!(
            split(b"{\"a\":1}\n{oops", None)
                .unwrap_err()
                .contains("line 2")
        );
        assert!(split(b"[1, 2]", None).unwrap_err().contains("element 0"));
        assert!(split(b"not json", None).is_err());
    }
}

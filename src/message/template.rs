//! Placeholders in subjects and bodies: `{run_id}`, `{path}`, `{pool}`,
//! `{seed}`, `{stream}`, `{sequence}`, `{token}` and `{time}`, with `{{` and
//! `}}` for literal braces.

/// Every placeholder name a template may use.
pub const PLACEHOLDERS: [&str; 8] = ["run_id", "path", "pool", "seed", "stream", "sequence", "token", "time"];

/// Checks that `text` uses only known placeholders and closes every brace.
/// The error message names the offending placeholder or brace.
pub fn check_template(text: &str) -> Result<(), String> {
    render(text, |_| Some(String::new())).map(|_| ())
}

/// Replaces each placeholder with the value `lookup` returns for its name.
/// `lookup` returns `None` for a name it does not know.
pub(super) fn render(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;

    while let Some(position) = rest.find(['{', '}']) {
        output.push_str(&rest[..position]);
        let tail = &rest[position..];

        if let Some(after) = tail.strip_prefix("{{") {
            output.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            output.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(format!(
                "unmatched '}}' at character {}; write '}}}}' for a literal brace",
                character_offset(text, tail)
            ));
        } else {
            let Some(end) = tail.find('}') else {
                return Err(format!(
                    "unclosed '{{' at character {}; close the placeholder with '}}' or write '{{{{' for a literal brace",
                    character_offset(text, tail)
                ));
            };
            let name = &tail[1..end];
            match lookup(name) {
                Some(value) if PLACEHOLDERS.contains(&name) => output.push_str(&value),
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{name}}}; use one of {}, or write '{{{{' for a literal brace",
                        PLACEHOLDERS.map(|known| format!("{{{known}}}")).join(" ")
                    ));
                }
            }
            rest = &tail[end + 1..];
        }
    }

    output.push_str(rest);
    Ok(output)
}

/// 1-based character position of `tail` within `text`, for messages.
fn character_offset(text: &str, tail: &str) -> usize {
    text[..text.len() - tail.len()].chars().count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_placeholders_pass() {
        let text = PLACEHOLDERS.map(|name| format!("{{{name}}}")).join(" ");
        assert_eq!(check_template(&text), Ok(()));
    }

    #[test]
    fn doubled_braces_are_literal() {
        let rendered = render("{{run_id}} is {run_id}}}", |_| Some("r1".to_owned()));
        assert_eq!(rendered.as_deref(), Ok("{run_id} is r1}"));
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let error = check_template("Control via {paht}").unwrap_err();
        assert!(error.contains("{paht}"), "{error}");
    }

    #[test]
    fn unclosed_brace_is_reported() {
        let error = check_template("Control {run_id").unwrap_err();
        assert!(error.contains("unclosed '{' at character 9"), "{error}");
    }

    #[test]
    fn lone_closing_brace_is_reported() {
        let error = check_template("Control }").unwrap_err();
        assert!(error.contains("unmatched '}' at character 9"), "{error}");
    }

    #[test]
    fn empty_placeholder_is_unknown() {
        let error = check_template("a {} b").unwrap_err();
        assert!(error.contains("unknown placeholder {}"), "{error}");
    }
}

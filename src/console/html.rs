//! The page frame and the escaping every value goes through.

use axum::response::Html;

use super::Operator;

/// `s` safe inside HTML text and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn frame(title: &str, nav: &str, body: &str, head: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{head}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · berqenas</title><link rel=\"stylesheet\" href=\"/console/static/console.css\">\
         </head><body><header><h1><a href=\"/console\">berqenas</a></h1>{nav}</header>\
         <main>{body}</main></body></html>",
        esc(title)
    ))
}

/// A page outside a session (sign-in, errors).
pub fn bare(title: &str, body: &str) -> Html<String> {
    frame(title, "", body, "")
}

/// A page of a signed-in operator, with the navigation and the sign-out form.
pub fn page(title: &str, op: &Operator, body: &str) -> Html<String> {
    frame(title, &nav(op), body, "")
}

/// A page that reloads itself every `secs` (a run in progress): `<meta refresh>`
/// needs no script, so the CSP stays strict.
pub fn page_refreshing(title: &str, op: &Operator, body: &str, secs: u32) -> Html<String> {
    frame(
        title,
        &nav(op),
        body,
        &format!("<meta http-equiv=\"refresh\" content=\"{secs}\">"),
    )
}

fn nav(op: &Operator) -> String {
    format!(
        "<nav><a href=\"/console\">Tenants</a> <a href=\"/console/tenants/new\" id=\"nav-new\">New tenant</a> \
         <a href=\"/console/migrations\" id=\"nav-migrations\">Migrations</a> \
         <a href=\"/console/plans\" id=\"nav-plans\">Plans</a> \
         <a href=\"/console/operations\" id=\"nav-operations\">Operations</a> \
         <a href=\"/console/webhooks\" id=\"nav-webhooks\">Webhooks</a> \
         <a href=\"/console/audit\" id=\"nav-audit\">Audit</a>\
         <form method=\"post\" action=\"/console/logout\" class=\"inline\">{}\
         <button type=\"submit\" id=\"sign-out\">Sign out</button></form>\
         <span class=\"actor\">{}</span></nav>",
        csrf(op),
        esc(&op.actor)
    )
}

/// The hidden field every form of the session posts.
pub fn csrf(op: &Operator) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&op.csrf)
    )
}

/// A one-button form posting to `action`.
pub fn button(op: &Operator, action: &str, id: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\" id=\"{}\">{}</button></form>",
        esc(action),
        csrf(op),
        esc(id),
        esc(label)
    )
}

/// `<option>`s, the one equal to `selected` selected; the first is "any" (empty).
pub fn options(any: &str, values: &[&str], selected: Option<&str>) -> String {
    let mut out = format!("<option value=\"\">{}</option>", esc(any));
    for v in values {
        let sel = if Some(*v) == selected {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!("<option value=\"{0}\"{sel}>{0}</option>", esc(v)));
    }
    out
}

/// A time for people, UTC to the second.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn opt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "—".into())
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}

//! Pictures drawn on the server as inline SVG (no script, no inline style: colours
//! come from the stylesheet through classes): a line over time, bars per category,
//! and paired bars per day.

use chrono::{DateTime, NaiveDate, Utc};

use super::html::esc;

const W: f64 = 600.0;
const H: f64 = 140.0;
/// Room for the axis labels.
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 18.0;

/// Samples `(time, value)`, oldest first, each standing until the next one (the last
/// until `until`): a sample is stored only when its value moved, or after a while
/// (`--usage-sample-hold`), so a line straight from one to the next would draw a slope
/// where the value held, then jumped. `fmt` writes a value for people.
pub fn line(
    id: &str,
    title: &str,
    samples: &[(DateTime<Utc>, f64)],
    until: DateTime<Utc>,
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let mut out = format!(
        "<figure class=\"chart\" id=\"{}\"><figcaption>{}</figcaption>",
        esc(id),
        esc(title)
    );
    if samples.is_empty() {
        out.push_str("<p class=\"no-samples\">No samples yet.</p></figure>");
        return out;
    }
    let points = held(samples, until);
    let points = points.as_slice();
    let t0 = points[0].0.timestamp() as f64;
    let t1 = (points[points.len() - 1].0.timestamp() as f64).max(t0 + 1.0);
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1.0);
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * (W - LEFT - 10.0);
    let y = |v: f64| (H - BOTTOM) - v / max * (H - BOTTOM - 10.0);
    let coords: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(t.timestamp() as f64), y(*v)))
        .collect();
    out.push_str(&format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{b}\" x2=\"{W}\" y2=\"{b}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"10\" x2=\"{LEFT}\" y2=\"{b}\"/>\
         <text x=\"{lx}\" y=\"14\" text-anchor=\"end\">{}</text><text x=\"{lx}\" y=\"{b}\" text-anchor=\"end\">0</text>\
         <text x=\"{LEFT}\" y=\"{H}\">{}</text><text x=\"{W}\" y=\"{H}\" text-anchor=\"end\">{}</text>",
        esc(title),
        esc(title),
        esc(&fmt(max)),
        points[0].0.format("%m-%d %H:%M"),
        points[points.len() - 1].0.format("%m-%d %H:%M"),
        b = H - BOTTOM,
        lx = LEFT - 4.0,
    ));
    if points.len() == 1 {
        let (cx, cy) = (x(t0), y(points[0].1));
        out.push_str(&format!(
            "<circle class=\"series\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\"/>"
        ));
    } else {
        out.push_str(&format!(
            "<polyline class=\"series\" points=\"{}\"/>",
            coords.join(" ")
        ));
    }
    out.push_str(&format!(
        "</svg><p class=\"chart-note\">{} {}, latest {}</p></figure>",
        samples.len(),
        if samples.len() == 1 {
            "sample"
        } else {
            "samples"
        },
        esc(&fmt(points[points.len() - 1].1))
    ));
    out
}

/// The corners of `samples` drawn as steps: each value held up to the next sample's
/// time, the last one up to `until` (when that is later).
fn held(samples: &[(DateTime<Utc>, f64)], until: DateTime<Utc>) -> Vec<(DateTime<Utc>, f64)> {
    let mut out = Vec::with_capacity(samples.len() * 2 + 1);
    let mut before = None;
    for &(t, v) in samples {
        if let Some(b) = before {
            out.push((t, b));
        }
        out.push((t, v));
        before = Some(v);
    }
    if let Some(&(t, v)) = samples.last() {
        if until > t {
            out.push((until, v));
        }
    }
    out
}

/// Horizontal bars, one per `(label, count)` (drawn narrower than the lines, so the
/// labels stay readable beside them).
pub fn bars(id: &str, title: &str, items: &[(String, i64)]) -> String {
    const BW: f64 = 360.0;
    let row = 22.0;
    let h = row * items.len().max(1) as f64 + 4.0;
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1) as f64;
    let mut out = format!(
        "<figure class=\"chart\" id=\"{}\"><figcaption>{}</figcaption><svg viewBox=\"0 0 {BW} {h}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(id),
        esc(title),
        esc(title),
        esc(title)
    );
    let width = BW - 100.0 - 50.0;
    for (i, (label, n)) in items.iter().enumerate() {
        let top = i as f64 * row + 2.0;
        let len = (*n as f64 / max * width).max(1.0);
        out.push_str(&format!(
            "<text x=\"95\" y=\"{ty:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"100\" y=\"{top:.1}\" width=\"{len:.1}\" height=\"16\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\">{n}</text>",
            esc(label),
            ty = top + 13.0,
            tx = 104.0 + len,
        ));
    }
    out.push_str("</svg></figure>");
    out
}

/// Two bars a day (created, deleted), oldest day first.
pub fn per_day(id: &str, title: &str, days: &[(NaiveDate, i64, i64)]) -> String {
    let mut out = format!(
        "<figure class=\"chart\" id=\"{}\"><figcaption>{}</figcaption>",
        esc(id),
        esc(title)
    );
    if days.is_empty() {
        out.push_str(
            "<p class=\"no-samples\">No tenant created or deleted in this period.</p></figure>",
        );
        return out;
    }
    let max = days.iter().map(|d| d.1.max(d.2)).max().unwrap_or(0).max(1) as f64;
    let slot = ((W - LEFT) / days.len() as f64).min(40.0);
    let bar = (slot / 2.0 - 1.0).max(1.0);
    let scale = |n: i64| n as f64 / max * (H - BOTTOM - 10.0);
    out.push_str(&format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{b}\" x2=\"{W}\" y2=\"{b}\"/>\
         <text x=\"{lx}\" y=\"14\" text-anchor=\"end\">{max}</text>",
        esc(title),
        esc(title),
        b = H - BOTTOM,
        lx = LEFT - 4.0,
    ));
    for (i, (day, made, gone)) in days.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        let (hm, hg) = (scale(*made), scale(*gone));
        out.push_str(&format!(
            "<rect class=\"bar created\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{hm:.1}\"><title>{day}: {made} created</title></rect>\
             <rect class=\"bar deleted\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{hg:.1}\"><title>{day}: {gone} deleted</title></rect>",
            H - BOTTOM - hm,
            x + bar + 1.0,
            H - BOTTOM - hg,
        ));
    }
    out.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"{H}\">{}</text><text x=\"{W}\" y=\"{H}\" text-anchor=\"end\">{}</text></svg>\
         <p class=\"chart-note\"><span class=\"key created\">created</span> <span class=\"key deleted\">deleted</span> per UTC day</p></figure>",
        days[0].0,
        days[days.len() - 1].0,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_their_labels_and_draw_what_they_get() {
        let svg = bars("b", "per plan", &[("<free>".into(), 3), ("pro".into(), 0)]);
        assert!(svg.contains("&lt;free&gt;") && !svg.contains("<free>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        let t = Utc::now();
        let five = t + chrono::Duration::minutes(5);
        let l = line("l", "disk", &[(t, 1.0), (five, 2.0)], five, &|v| {
            format!("{v}")
        });
        assert!(l.contains("<polyline"), "{l}");
        assert!(l.contains("2 samples"), "{l}");
        assert!(!l.contains("style="), "no inline style: {l}");
        assert!(line("e", "disk", &[], t, &|v| format!("{v}")).contains("No samples yet"));
        // One sample held until now is a line too.
        let one = line("o", "disk", &[(t, 1.0)], five, &|v| format!("{v}"));
        assert!(
            one.contains("<polyline") && one.contains("1 sample,"),
            "{one}"
        );
    }

    #[test]
    fn samples_stand_until_the_next_one() {
        let t = Utc::now();
        let m = |n: i64| t + chrono::Duration::minutes(n);
        assert_eq!(
            held(&[(m(0), 1.0), (m(60), 3.0)], m(90)),
            [(m(0), 1.0), (m(60), 1.0), (m(60), 3.0), (m(90), 3.0)]
        );
        // Nothing after `until` is added when the last sample is that late already.
        assert_eq!(held(&[(m(0), 1.0)], m(0)), [(m(0), 1.0)]);
        assert!(held(&[], m(0)).is_empty());
    }
}

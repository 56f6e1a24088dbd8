//! Inline SVG charts, drawn on the server (no script, nothing fetched): changes per window
//! against a limit.

use maud::{Markup, html};

const W: f64 = 760.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 12.0;

/// A bar per window (`counts`, oldest first) from `start_label` to `end_label`, with the
/// learned `limit` as a red line when there is one. `title` names the chart for screen readers.
pub fn bars(
    title: &str,
    counts: &[u64],
    limit: Option<f64>,
    start_label: &str,
    end_label: &str,
) -> Markup {
    let max_count = counts.iter().copied().max().unwrap_or(0) as f64;
    // A round top: 5, 10, 20, 50, 100… above the tallest bar and the limit.
    let need = max_count.max(limit.unwrap_or(0.0)).max(1.0) * 1.1;
    let top = [1.0, 2.0, 5.0]
        .iter()
        .flat_map(|m| (0..12).map(move |e| m * 10f64.powi(e)))
        .filter(|t| *t >= need.max(4.0))
        .fold(f64::MAX, f64::min);
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let n = counts.len().max(1) as f64;
    let bw = plot_w / n;
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let ticks = [0.0, top / 2.0, top];
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
            title { (title) }
            @for t in ticks {
                line x1=(LEFT) x2=(W - 8.0) y1=(y(t)) y2=(y(t)) stroke="#e3e6ec" stroke-width="1" {}
                text x=(LEFT - 6.0) y=(y(t) + 4.0) font-size="11" text-anchor="end" fill="#667085" { (format!("{t:.0}")) }
            }
            @for (i, c) in counts.iter().enumerate() {
                @let h = (*c as f64) / top * plot_h;
                @let over = limit.is_some_and(|l| (*c as f64) > l);
                rect x=(format!("{:.2}", LEFT + i as f64 * bw + bw * 0.1)) y=(format!("{:.2}", TOP + plot_h - h))
                    width=(format!("{:.2}", (bw * 0.8).max(0.5))) height=(format!("{:.2}", h))
                    fill=(if over { "#c0262d" } else { "#4f6a9a" }) {
                    title { (c) " change(s)" }
                }
            }
            @if let Some(l) = limit {
                line.limit x1=(LEFT) x2=(W - 8.0) y1=(format!("{:.2}", y(l))) y2=(format!("{:.2}", y(l))) stroke="#c0262d" stroke-width="2" stroke-dasharray="6 4" {}
                text x=(W - 10.0) y=(format!("{:.2}", y(l) - 5.0)) font-size="11" text-anchor="end" fill="#c0262d" { "learned limit " (format!("{l:.0}")) }
            }
            line x1=(LEFT) x2=(W - 8.0) y1=(TOP + plot_h) y2=(TOP + plot_h) stroke="#9aa3b2" {}
            text x=(LEFT) y=(H - 6.0) font-size="11" fill="#667085" { (start_label) }
            text x=(W - 8.0) y=(H - 6.0) font-size="11" text-anchor="end" fill="#667085" { (end_label) }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bar_over_the_limit_is_red_and_labels_are_escaped() {
        let svg = super::bars("<b>", &[1, 5, 2], Some(3.0), "a", "b").into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert_eq!(
            svg.matches("#c0262d").count(),
            3,
            "one red bar, the line and its label"
        );
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }
}

//! The allocator ratio table as an SVG bar chart (`--svg FILE`), for the
//! README: one group of bars per workload, one bar per allocator, the
//! median time as a multiple of the system allocator's (1× is marked).
//! Plain SVG text, no dependencies.

use std::fmt::Write;

/// One bar: the allocator's name and its ratio (`None`: no figure).
pub struct Bar<'a> {
    pub name: &'a str,
    pub ratio: Option<f64>,
}

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 150.0;
const BAR_H: f64 = 14.0;
const GROUP_GAP: f64 = 16.0;
/// Ratios past this are drawn to the edge and labelled.
const MAX_RATIO: f64 = 4.0;
const COLOURS: [&str; 8] = [
    "#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf",
];

/// The chart for `groups` (workload label, bars in allocator order).
pub fn svg(title: &str, groups: &[(String, Vec<Bar<'_>>)]) -> String {
    let bars: usize = groups.iter().map(|(_, b)| b.len()).sum();
    let height = 50.0 + bars as f64 * BAR_H + groups.len() as f64 * (GROUP_GAP + 16.0) + 20.0;
    let plot_w = WIDTH - LABEL_W - 60.0;
    let x_of = |r: f64| LABEL_W + plot_w * (r.min(MAX_RATIO) / MAX_RATIO);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for tick in [0.0, 1.0, 2.0, 3.0, 4.0] {
        let x = x_of(tick);
        let stroke = if tick == 1.0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="34" x2="{x:.1}" y2="{:.0}" stroke="{stroke}"/><text x="{x:.1}" y="32" text-anchor="middle">{tick}×</text>"#,
            height - 10.0
        );
    }
    let mut y = 44.0;
    for (label, group) in groups {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.0}" font-weight="bold">{}</text>"#,
            y + 10.0,
            escape(label)
        );
        y += 16.0;
        for (i, bar) in group.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let _ = writeln!(
                s,
                r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
                LABEL_W - 6.0,
                y + BAR_H - 3.0,
                escape(bar.name)
            );
            match bar.ratio.filter(|r| r.is_finite()) {
                Some(r) => {
                    let _ = writeln!(
                        s,
                        r##"<rect x="{LABEL_W}" y="{y:.0}" width="{:.1}" height="{:.0}" fill="{colour}"/><text x="{:.1}" y="{:.0}">{r:.2}×</text>"##,
                        x_of(r) - LABEL_W,
                        BAR_H - 2.0,
                        x_of(r) + 4.0,
                        y + BAR_H - 3.0
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.0}" y="{:.0}" fill="#999">no figure</text>"##,
                        LABEL_W + 4.0,
                        y + BAR_H - 3.0
                    );
                }
            }
            y += BAR_H;
        }
        y += GROUP_GAP;
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_bar_and_marks_missing_figures() {
        let groups = vec![(
            "churn".to_string(),
            vec![
                Bar {
                    name: "system",
                    ratio: Some(1.0),
                },
                Bar {
                    name: "secalloc",
                    ratio: Some(2.5),
                },
                Bar {
                    name: "broken",
                    ratio: None,
                },
            ],
        )];
        let out = svg("t < u", &groups);
        assert!(out.starts_with("<svg"));
        assert_eq!(out.matches("<rect x=").count(), 2);
        assert!(out.contains("2.50×") && out.contains("no figure") && out.contains("t &lt; u"));
    }
}

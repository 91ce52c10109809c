//! Plain SVG line charts for `--vs-etcd --out DIR`: throughput against clients, and the
//! latency CDF of puts. Hand-written SVG keeps the bench free of a plotting library.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;
const TICKS: usize = 5;

pub(crate) struct Series {
    pub(crate) name: &'static str,
    pub(crate) color: &'static str,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A line chart; with `log_x`, the x axis is log2 and ticks sit on the data's x values.
pub(crate) fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series], log_x: bool) -> String {
    let fx = |x: f64| if log_x { x.max(1.0).log2() } else { x };
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let x_min = all.iter().map(|p| fx(p.0)).fold(f64::INFINITY, f64::min).min(if log_x { f64::INFINITY } else { 0.0 });
    let x_max = all.iter().map(|p| fx(p.0)).fold(f64::NEG_INFINITY, f64::max);
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.05;
    let (x_span, plot_w, plot_h) = ((x_max - x_min).max(f64::MIN_POSITIVE), WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM);
    let px = |x: f64| MARGIN_LEFT + (fx(x) - x_min) / x_span * plot_w;
    let py = |y: f64| MARGIN_TOP + plot_h - y / y_max * plot_h;
    let mut svg = String::new();
    let _ = write!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#);
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>"#, WIDTH / 2.0);
    let (x0, y0) = (MARGIN_LEFT, MARGIN_TOP + plot_h);
    let _ = write!(svg, r#"<line x1="{x0}" y1="{y0}" x2="{}" y2="{y0}" stroke="black"/><line x1="{x0}" y1="{MARGIN_TOP}" x2="{x0}" y2="{y0}" stroke="black"/>"#, x0 + plot_w);
    for i in 0..=TICKS {
        let y = y_max * i as f64 / TICKS as f64;
        let _ = write!(svg, r##"<line x1="{x0}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##, py(y), x0 + plot_w, x0 - 6.0, py(y) + 4.0, short(y));
    }
    let mut x_ticks: Vec<f64> = if log_x { all.iter().map(|p| p.0).collect() } else { (0..=TICKS).map(|i| x_min + x_span * i as f64 / TICKS as f64).collect() };
    x_ticks.sort_by(f64::total_cmp);
    x_ticks.dedup();
    for x in x_ticks {
        let _ = write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, px(x), y0 + 18.0, short(x));
    }
    let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#, x0 + plot_w / 2.0, HEIGHT - 10.0);
    let _ = write!(svg, r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{y_label}</text>"#, MARGIN_TOP + plot_h / 2.0);
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#, s.color, path.join(" "));
        let _ = write!(svg, r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#, x0 + 12.0, MARGIN_TOP + 8.0 + 18.0 * i as f64, s.color, x0 + 30.0, MARGIN_TOP + 18.0 + 18.0 * i as f64, s.name);
    }
    svg.push_str("</svg>\n");
    svg
}

fn short(value: f64) -> String {
    match value {
        v if v.fract() == 0.0 && v < 10_000.0 => format!("{v:.0}"),
        v if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

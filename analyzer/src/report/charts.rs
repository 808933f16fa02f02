//! Inline SVG charts of the HTML report, drawn with `plotters`' SVG backend: no script, no font
//! file, no external asset (text is SVG `<text>` in the page's sans-serif font).

use plotters::prelude::*;

use super::data::Day;

const ACCENT: RGBColor = RGBColor(37, 99, 235);
const MUTED: RGBColor = RGBColor(148, 163, 184);
const GRID: RGBColor = RGBColor(226, 232, 240);
const INK: RGBColor = RGBColor(30, 41, 59);

/// Failure rate per day (%), the previous period in grey and the current one in blue.
pub fn daily_failure_rate(days: &[Day]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 260)).into_drawing_area();
        let _ = draw_daily(&root, days);
        let _ = root.present();
    }
    responsive(svg)
}

fn draw_daily<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    days: &[Day],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let rate = |d: &Day| if d.calls == 0 { 0.0 } else { 100.0 * d.failing_calls as f64 / d.calls as f64 };
    let max = days.iter().map(rate).fold(0.0f64, f64::max).max(1.0) * 1.15;
    let n = days.len().max(2);
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .caption("failure rate per day (%)", ("sans-serif", 15).into_font().color(&INK))
        .build_cartesian_2d(0f64..(n - 1) as f64, 0f64..max)?;
    let labels: Vec<String> = days.iter().map(|d| d.date.get(5..).unwrap_or(&d.date).to_string()).collect();
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(MUTED)
        .x_labels(n.min(14))
        .x_label_formatter(&|x| labels.get(x.round() as usize).cloned().unwrap_or_default())
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 11).into_font().color(&INK))
        .draw()?;
    // A day without calls has no failure rate: it is a gap in the line, not a 0 % point.
    let mut runs: Vec<(bool, Vec<(f64, f64)>)> = Vec::new();
    for (i, d) in days.iter().enumerate() {
        if d.calls == 0 {
            runs.push((d.current, Vec::new()));
            continue;
        }
        let point = (i as f64, rate(d));
        match runs.last_mut() {
            Some((current, run)) if *current == d.current || run.is_empty() => {
                *current = d.current;
                run.push(point);
            }
            Some((_, run)) => {
                // The boundary: the current period's line starts where the previous one ended.
                let joint = *run.last().expect("non-empty");
                runs.push((d.current, vec![joint, point]));
            }
            None => runs.push((d.current, vec![point])),
        }
    }
    for (current, run) in runs.iter().filter(|(_, r)| !r.is_empty()) {
        let (colour, width, dot) = if *current { (ACCENT, 3, 4) } else { (MUTED, 2, 3) };
        chart.draw_series(LineSeries::new(run.clone(), colour.stroke_width(width)))?;
        chart.draw_series(run.iter().map(|&(x, y)| Circle::new((x, y), dot, colour.filled())))?;
    }
    if days.iter().all(|d| d.calls == 0 || d.current) {
        chart.draw_series(std::iter::once(Text::new(
            "previous period: no data",
            (0.0, max * 0.92),
            ("sans-serif", 12).into_font().color(&MUTED),
        )))?;
    }
    Ok(())
}

/// One horizontal bar per item: `(label, value, text shown after the bar)`.
pub fn bars(title: &str, items: &[(String, f64, String)]) -> String {
    let row = 26;
    let height = 40 + row * items.len().max(1) as u32 + 10;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        let _ = draw_bars(&root, title, items, row);
        let _ = root.present();
    }
    responsive(svg)
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    items: &[(String, f64, String)],
    row: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let font = |size: i32| ("sans-serif", size).into_font().color(&INK);
    root.draw(&Text::new(title.to_string(), (12, 10), font(15)))?;
    let (bar_x, bar_max) = (262, 360.0);
    let max = items.iter().map(|i| i.1).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
    for (n, (label, value, note)) in items.iter().enumerate() {
        let y = 40 + n as i32 * row as i32;
        let label: String =
            if label.chars().count() > 38 { format!("{}…", label.chars().take(37).collect::<String>()) } else { label.clone() };
        root.draw(&Text::new(label, (12, y + 4), font(12)))?;
        let w = ((value / max) * bar_max).round().max(2.0) as i32;
        root.draw(&Rectangle::new([(bar_x, y + 2), (bar_x + w, y + row as i32 - 6)], ACCENT.mix(0.85).filled()))?;
        root.draw(&Text::new(note.clone(), (bar_x + w + 8, y + 4), font(12)))?;
    }
    Ok(())
}

/// Lets the browser scale the chart to the page width.
fn responsive(svg: String) -> String {
    svg.replacen("<svg ", "<svg style=\"width:100%;height:auto\" role=\"img\" ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_self_contained_svg() {
        let days: Vec<Day> = (0..14)
            .map(|i| Day { date: format!("2026-11-{:02}", 9 + i), current: i >= 7, calls: 100, failing_calls: 5 + i as u64 })
            .collect();
        let svg = daily_failure_rate(&days);
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("failure rate per day"));
        assert!(svg.contains("11-16"));
        assert!(!svg.contains("href"), "no external reference");
        let svg = bars("calls per pattern", &[("refund policy".into(), 12.0, "12 calls".into()), ("x".into(), 3.0, "3 calls".into())]);
        assert!(svg.contains("refund policy") && svg.contains("<rect"));
    }
}

"""The inline SVG charts: well-formed, one mark per value, gaps where data is missing,
bad points marked on the bad side of the limit, text escaped; a trend's axis from the
metric's own range, with round ticks whose labels fit, and every point inside the plot."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from reporting.charts import bar_chart, curve_chart, text_width, trend_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def test_a_trend_draws_a_point_per_known_value_and_breaks_the_line_at_a_gap() -> None:
    root = parse(trend_chart([0.1, 0.2, None, 0.4, 0.5], list("abcde"), title="drift share",
                             better="lower"))
    assert len(root.findall(f"{SVG}circle")) == 4
    lines = root.findall(f"{SVG}polyline")
    assert [len(line.get("points").split()) for line in lines] == [2, 2]
    assert "lower is better" in root.find(f"{SVG}title").text


def test_points_past_the_limit_on_the_bad_side_are_marked_bad() -> None:
    higher = parse(trend_chart([0.9, 0.6, 0.8], ["1", "2", "3"], title="live AUC",
                               better="higher", limit=0.7))
    assert [c.get("class") for c in higher.findall(f"{SVG}circle")] == [
        "point", "point bad", "point"]
    lower = parse(trend_chart([0.9, 0.6, 0.8], ["1", "2", "3"], title="share",
                              better="lower", limit=0.7))
    assert [c.get("class") for c in lower.findall(f"{SVG}circle")] == [
        "point bad", "point", "point bad"]
    # As the alarms read them: a floor is good at its value, a threshold already bad.
    on_limit = [parse(trend_chart([0.7], ["1"], title="x", better=better, limit=0.7))
                .find(f"{SVG}circle").get("class") for better in ("higher", "lower")]
    assert on_limit == ["point", "point bad"]


def test_an_empty_trend_says_there_is_no_data() -> None:
    root = parse(trend_chart([], [], title="refusal rate", better="lower"))
    assert "no data yet" in "".join(root.itertext())


def test_text_is_escaped() -> None:
    root = parse(bar_chart([("a<b & c", 1.0)], title="<script>"))
    assert "a<b & c" in "".join(root.itertext())
    assert root.find(f"{SVG}script") is None


def test_negative_bars_go_left_of_the_axis() -> None:
    root = parse(bar_chart([("up", 2.0), ("down", -1.0)], title="contributions"))
    axis = float(root.findall(f"{SVG}line")[-1].get("x1"))
    up, down = root.findall(f"{SVG}rect")
    assert float(up.get("x")) == pytest.approx(axis, abs=0.1)
    assert float(down.get("x")) + float(down.get("width")) == pytest.approx(axis, abs=0.1)
    assert float(up.get("width")) == pytest.approx(2 * float(down.get("width")), abs=0.2)


def test_a_curve_skips_points_that_are_not_numbers() -> None:
    root = parse(curve_chart([(0.1, 0.1), (0.5, float("nan")), (0.9, 0.8)], title="calibration",
                             x_label="predicted", y_label="observed"))
    assert len(root.findall(f"{SVG}circle")) == 2


def test_one_label_per_value_is_required() -> None:
    with pytest.raises(ValueError):
        trend_chart([1.0], [], title="x")


def plot_area(root: ET.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a trend's plot area."""
    rect = root.find(f"{SVG}rect[@class='plot']")
    x, y = float(rect.get("x")), float(rect.get("y"))
    return x, y, x + float(rect.get("width")), y + float(rect.get("height"))


def ticks(root: ET.Element) -> list[tuple[str, float]]:
    """(label, y) of each tick of the value axis, top to bottom."""
    return sorted(((t.text, float(t.get("y")) - 4) for t in root.iter(f"{SVG}text")
                   if t.get("class") == "tick"), key=lambda tick: tick[1])


def drawn(root: ET.Element) -> list[tuple[float, float]]:
    return [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{SVG}circle")]


def height_share(root: ET.Element, y: float) -> float:
    """Where y sits in the plot: 0 at its bottom, 1 at its top."""
    _, top, _, bottom = plot_area(root)
    return (bottom - y) / (bottom - top)


@pytest.mark.parametrize(("scale", "fmt", "series"), [
    ("share", "{:.1%}", [0.02, 0.02, 0.02]), ("share", "{:.1%}", [0.01, 0.05, 0.10]),
    ("unit", "{:.3f}", [0.76, 0.76]), ("unit", "{:.3f}", [0.55, 0.80, 0.99]),
    ("from_zero", "{:.4g}", [54.1, 54.1]), ("from_zero", "{:.4g}", [48.0, 61.2, 55.0]),
    ("from_zero", "{:.1f}", [0.0, 0.0]), ("data", "{:.2f}", [1000.0]),
    ("data", "{:.2f}", [-3.0, 5.0]),
])
def test_flat_and_varying_series_draw_inside_their_axes(scale: str, fmt: str,
                                                         series: list[float]) -> None:
    root = parse(trend_chart(series, [str(i) for i in range(len(series))], title="x",
                             scale=scale, fmt=fmt, limit=None))
    left, top, right, bottom = plot_area(root)
    points = drawn(root)
    assert len(points) == len(series)
    assert all(left <= x <= right and top <= y <= bottom for x, y in points), points
    labels = ticks(root)
    assert len(labels) >= 3  # readable: at least three ticks
    assert all(top - 0.1 <= y <= bottom + 0.1 for _, y in labels)
    # Round values, evenly spaced: the same step between every pair of ticks.
    values = [float(text.rstrip("%").replace(",", "")) for text, _ in labels][::-1]
    steps = {round(b - a, 9) for a, b in zip(values, values[1:], strict=False)}
    assert len(steps) == 1
    step = steps.pop()
    assert step > 0 and round(step / 10 ** math.floor(math.log10(step)), 9) in {1, 2, 2.5, 5}
    # Each tick's label fits left of the plot (no "00.0%"), inside the picture.
    for text, _ in labels:
        assert text_width(text) <= left - 4
    # Drawn at its value: the axis ticks bracket every point.
    assert values[0] <= min(series) and max(series) <= values[-1]


def test_a_rate_is_drawn_on_0_to_100_percent() -> None:
    """A refusal rate of 2% sits at the bottom of a 0-100% axis, not mid-height on 48-52%."""
    root = parse(trend_chart([0.02, 0.02], ["a", "b"], title="Refusal rate", scale="share",
                             better="lower", fmt="{:.1%}"))
    assert [text for text, _ in ticks(root)] == ["100%", "75%", "50%", "25%", "0%"]
    assert all(height_share(root, y) == pytest.approx(0.02, abs=0.01) for _, y in drawn(root))


def test_an_auc_axis_stays_within_0_and_1() -> None:
    for series, limit in (([0.99, 1.0, 0.995], 0.65), ([None, None], 0.65), ([0.76], None)):
        root = parse(trend_chart(series, [str(i) for i in range(len(series))], title="AUC",
                                 scale="unit", better="higher", limit=limit, fmt="{:.3f}"))
        values = [float(text) for text, _ in ticks(root)]
        assert 0.0 <= min(values) and max(values) <= 1.0, values
        if limit is not None:  # the floor is on the axis, drawn inside the plot
            _, top, _, bottom = plot_area(root)
            line = float(root.find(f"{SVG}line[@class='limit']").get("y1"))
            assert top <= line <= bottom
    # With no data yet the whole range shows, not a sliver around the floor.
    empty = parse(trend_chart([None], ["a"], title="AUC", scale="unit", limit=0.65))
    assert [text for text, _ in ticks(empty)][::-1][0::2] == ["0.00", "0.50", "1.00"]


def test_an_error_is_drawn_from_zero_in_its_own_unit() -> None:
    root = parse(trend_chart([54.1, 54.1], ["a", "b"], title="RMSE", scale="from_zero",
                             better="lower", limit=66.0, fmt="{:.4g}"))
    labels = [text for text, _ in ticks(root)]
    assert labels[-1] == "0" and float(labels[0]) >= 66.0  # the limit is on the axis
    assert all(0.5 < height_share(root, y) < 1 for _, y in drawn(root))


def test_the_axis_labels_are_those_given_and_the_texts_fit_the_picture() -> None:
    title = "Refusal rate (4xx) (lower is better), a long title"
    root = parse(trend_chart([0.1, 0.2, 0.3], ["08:00:05", "08:00:25", "08:00:45"],
                             title=title, axis_labels=["2026-05-01 08:00:05", "08:00:45"],
                             scale="share", fmt="{:.1%}"))
    under = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "axis"]
    assert under == ["2026-05-01 08:00:05", "08:00:45"]
    assert float(root.get("width")) >= text_width(title, bold=True)
    tips = [c.find(f"{SVG}title").text for c in root.iter(f"{SVG}circle")]
    assert tips == ["08:00:05: 10.0%", "08:00:25: 20.0%", "08:00:45: 30.0%"]

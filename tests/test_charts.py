"""The inline SVG charts: well-formed, one mark per value, gaps where data is missing,
bad points marked on the bad side of the limit, text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from reporting.charts import bar_chart, curve_chart, trend_chart

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

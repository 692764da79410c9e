package main

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Colours of the server and its baselines in every panel.
var plotColors = map[string]color.Color{
	"server":  color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"floor":   color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	"g-floor": color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	"insert":  color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// plotSeries is one source of a scenario's figures (server, floor, g-floor, insert), present
// or not.
type plotSeries struct {
	name  string
	phase *phaseResult
}

func seriesOf(s scenarioResult) []plotSeries {
	all := []plotSeries{{"server", &s.Server}, {"floor", s.Floor}, {"g-floor", s.GuaranteedFloor}, {"insert", s.Insert}}
	var out []plotSeries
	for _, p := range all {
		if p.phase != nil {
			out = append(out, p)
		}
	}
	return out
}

// drawPlot writes a PNG with one row per scenario: throughput (operations/s) of the
// server and its baselines on the left, their p50/p95/p99 latencies on the right.
func drawPlot(file string, rep benchReport) error {
	if len(rep.Scenarios) == 0 {
		return fmt.Errorf("--plot: no scenario to draw")
	}
	rows := make([][]*plot.Plot, len(rep.Scenarios))
	for i, s := range rep.Scenarios {
		tp, err := throughputPlot(s)
		if err != nil {
			return err
		}
		lp, err := latencyPlot(s)
		if err != nil {
			return err
		}
		rows[i] = []*plot.Plot{tp, lp}
	}
	img := vgimg.New(11*vg.Inch, vg.Length(len(rows))*3.4*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: 2, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		for j := range rows[i] {
			rows[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("--plot: write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--plot: write %s: %w", file, err)
	}
	return nil
}

func throughputPlot(s scenarioResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: throughput (%d in flight)", s.Name, s.Workers)
	p.Y.Label.Text = unitPlural(s.Unit) + "/s"
	if s.Unit != "commit" {
		p.Y.Label.Text = s.Unit + " calls/s"
	}
	p.Y.Min = 0
	var names []string
	var top float64
	for i, sr := range seriesOf(s) {
		top = max(top, sr.phase.PerSecond)
		bar, err := plotter.NewBarChart(plotter.Values{sr.phase.PerSecond}, vg.Points(40))
		if err != nil {
			return nil, fmt.Errorf("--plot: %w", err)
		}
		bar.XMin = float64(i)
		bar.Color, bar.LineStyle.Width = plotColors[sr.name], 0
		p.Add(bar)
		names = append(names, fmt.Sprintf("%s %.0f/s", sr.name, sr.phase.PerSecond))
	}
	p.NominalX(names...)
	if top > 0 {
		p.Y.Max = top * 1.1
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

func latencyPlot(s scenarioResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: latency percentiles", s.Name)
	p.Y.Label.Text = "ms"
	p.Y.Min = 0
	series := seriesOf(s)
	width := vg.Points(18)
	var top float64
	for i, sr := range series {
		top = max(top, sr.phase.P99Ms)
		bar, err := plotter.NewBarChart(plotter.Values{sr.phase.P50Ms, sr.phase.P95Ms, sr.phase.P99Ms}, width)
		if err != nil {
			return nil, fmt.Errorf("--plot: %w", err)
		}
		bar.Offset = width * vg.Length(float64(i)-float64(len(series)-1)/2)
		bar.Color, bar.LineStyle.Width = plotColors[sr.name], 0
		p.Add(bar)
		p.Legend.Add(sr.name, bar)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Millimeter * 2
	p.NominalX("p50", "p95", "p99")
	if top > 0 {
		p.Y.Max = top * 1.25 // room for the legend
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

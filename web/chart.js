// The candlestick chart: a thin layer over TradingView's Lightweight Charts (the global
// `LightweightCharts` of its standalone build, vendored from the pinned npm package). Python computes
// what to draw (src/signalguard/browser/chart.py) and hands it over as two JSON strings, so that a
// redraw crosses from Python to JavaScript once.
"use strict";

(() => {
  let chart = null;
  let series = null;
  let markers = null;
  let shownKey = null;

  function create(el) {
    const lib = globalThis.LightweightCharts;
    if (!lib) return false;
    chart = lib.createChart(el, {
      autoSize: true,
      // The logo injects an inline <style>, which the page's Content-Security-Policy refuses; the
      // attribution is a plain link under the chart instead.
      layout: { attributionLogo: false, background: { color: "#ffffff" }, textColor: "#18222d" },
      grid: { vertLines: { color: "#eef1f4" }, horzLines: { color: "#eef1f4" } },
      timeScale: { timeVisible: true, secondsVisible: true },
    });
    series = chart.addSeries(lib.CandlestickSeries, {
      upColor: "#1f7a4d", downColor: "#a12a2a", wickUpColor: "#1f7a4d", wickDownColor: "#a12a2a",
      borderVisible: false,
    });
    markers = lib.createSeriesMarkers(series, []);
    return true;
  }

  globalThis.signalguardChart = {
    /** Draw `candlesJson` (bars, epoch seconds) with `markersJson`; `key` names the stream, so that a
     * new stream refits the time scale and the same one keeps the user's zoom. Returns false while
     * the library is not loaded yet (the next redraw tries again). */
    render(el, key, candlesJson, markersJson) {
      if (!chart && !create(el)) return false;
      series.setData(JSON.parse(candlesJson));
      markers.setMarkers(JSON.parse(markersJson));
      if (key !== shownKey) {
        shownKey = key;
        chart.timeScale().fitContent();
      }
      return true;
    },
    /** Empty the chart (no stream, or no data). */
    clear() {
      if (!chart) return;
      series.setData([]);
      markers.setMarkers([]);
      shownKey = null;
    },
  };
})();

// The candlestick chart: a thin layer over TradingView's Lightweight Charts (the global
// `LightweightCharts` of its standalone build, vendored from the pinned npm package). Python computes
// what to draw (src/signalguard/browser/chart.py) and hands it over as two JSON strings, so that a
// redraw crosses from Python to JavaScript once.
"use strict";

(() => {
  const LIBRARY = "./web/vendor/lightweight-charts/lightweight-charts.standalone.production.js";
  let chart = null;
  let series = null;
  let markers = null;
  let shownKey = null;
  let loading = null;
  let latest = null;

  // The library (~190 KiB) is not needed until the first chart: it is loaded then, off the page's
  // start-up path, and the latest drawing asked for meanwhile is made when it arrives.
  function load() {
    if (!loading) {
      loading = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = LIBRARY;
        script.onload = resolve;
        script.onerror = () => reject(new Error(`${LIBRARY} did not load`));
        document.head.append(script);
      });
      loading.then(() => latest && draw(...latest)).catch((exc) => console.warn(`signalguard: ${exc.message}`));
    }
  }

  // The page's colour scheme (boot.js sets <html data-theme>): the chart follows it.
  function colours() {
    const dark = document.documentElement.dataset.theme === "dark";
    const grid = dark ? "#2c3a48" : "#eef1f4";
    return {
      // The logo injects an inline <style>, which the page's Content-Security-Policy refuses; the
      // attribution is a plain link under the chart instead.
      layout: {
        attributionLogo: false,
        background: { color: dark ? "#18222d" : "#ffffff" },
        textColor: dark ? "#e3e9ef" : "#18222d",
      },
      grid: { vertLines: { color: grid }, horzLines: { color: grid } },
    };
  }
  addEventListener("signalguard:theme", () => chart && chart.applyOptions(colours()));

  function create(el) {
    const lib = globalThis.LightweightCharts;
    if (!lib) return false;
    chart = lib.createChart(el, {
      autoSize: true,
      // Room for the markers under the lowest bars and beside the newest one, so that no marker
      // or its letter is cut off at the chart's edges.
      timeScale: { timeVisible: true, secondsVisible: true, rightOffset: 4 },
      rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.16 } },
      ...colours(),
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
     * new stream refits the time scale and the same one keeps the user's zoom. The first call loads
     * the library and draws when it arrives. */
    render(el, key, candlesJson, markersJson) {
      if (!chart && !globalThis.LightweightCharts) {
        latest = [el, key, candlesJson, markersJson];
        load();
        return true;  // drawn when the library arrives
      }
      return draw(el, key, candlesJson, markersJson);
    },
    /** Empty the chart (no stream, or no data). */
    clear() {
      latest = null;
      if (!chart) return;
      series.setData([]);
      markers.setMarkers([]);
      shownKey = null;
    },
  };

  function draw(el, key, candlesJson, markersJson) {
    latest = null;
    if (!chart && !create(el)) return false;
    series.setData(JSON.parse(candlesJson));
    markers.setMarkers(JSON.parse(markersJson));
    if (key !== shownKey) {
      shownKey = key;
      chart.timeScale().fitContent();
    }
    return true;
  }
})();

// Usage charts: stacked bars of spend and tokens per day, from the JSON the page embeds.
(function () {
  "use strict";
  var source = document.getElementById("usage-chart-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var palette = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6",
    "#94a3b8"];

  function datasets(rows) {
    return rows.map(function (row, index) {
      return {
        label: row.label,
        data: row.data,
        backgroundColor: palette[index % palette.length],
        borderRadius: 3,
        maxBarThickness: 28,
      };
    });
  }

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#6b7280";

  function draw(canvasId, rows, format) {
    var canvas = document.getElementById(canvasId);
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: datasets(rows) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true } },
          y: { stacked: true, beginAtZero: true, grid: { color: "#eef0f4" },
               ticks: { maxTicksLimit: 6, callback: function (value) { return format(value); } } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } },
          tooltip: { callbacks: { label: function (item) {
            return item.dataset.label + ": " + format(item.parsed.y);
          } } },
        },
      },
    });
  }

  function dollars(value) {
    if (value === 0) return "$0";
    if (value >= 0.01) return "$" + value.toFixed(2);
    // Sub-cent amounts: up to seven decimals, trailing zeros dropped ("$0.0000009").
    return "$" + value.toFixed(7).replace(/0+$/, "").replace(/\.$/, "");
  }
  function tokens(value) {
    return Number(value).toLocaleString();
  }

  draw("chart-cost", data.cost, dollars);
  draw("chart-tokens", data.tokens, tokens);
})();

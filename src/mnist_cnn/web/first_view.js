// mnist-cnn's first view of TensorBoard: "Ignore outliers in chart scaling" starts unticked, and
// Time Series draws the points as logged (smoothing 0). TensorBoard trims a chart's y-axis to its
// points' 5th-95th percentile, which leaves a curve of three epochs one point on a 0-2 axis, and
// scales it to the smoothed line alone, which cut off the last logged value. Only the first
// visit is changed: a setting the person has chosen is stored under these keys and kept.
(function () {
  try {
    var key = "_tb_global_settings"; // the Time Series dashboard's settings
    var settings = JSON.parse(window.localStorage.getItem(key) || "{}");
    if (!("ignoreOutliers" in settings)) {
      settings.ignoreOutliers = false;
    }
    if (!("scalarSmoothing" in settings)) {
      settings.scalarSmoothing = 0;
    }
    window.localStorage.setItem(key, JSON.stringify(settings));
    if (window.localStorage.getItem("_ignoreYOutliers") === null) {
      // the Scalars and Custom Scalars dashboards' own setting
      window.localStorage.setItem("_ignoreYOutliers", "false");
    }
  } catch (e) {
    // storage off (a private window): TensorBoard's own defaults apply
  }
})();

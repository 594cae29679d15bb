// Loaded between require.js and the ipywidgets HTML manager (embed-amd.js) on pages with saved widgets.
(function () {
  // The manager's modules are named "@jupyter-widgets/html-manager/dist/..." and find their fonts next to
  // their own URL, which RequireJS resolves relative to the page unless told where they live.
  var root = document.documentElement.dataset.content_root || "";
  window.require.config({paths: {"@jupyter-widgets/html-manager/dist": root + "_static/html-manager/dist"}});

  // The controls typeset their labels with the MathJax 2 call MathJax.Hub.Queue(["Typeset", Hub, el]);
  // the book loads MathJax 3 (deferred, so it exists by DOMContentLoaded, before the widgets render on load).
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return;
    mj.Hub = {
      Queue: function (job) {
        var el = job && job[2];
        mj.startup.promise.then(function () { return mj.typesetPromise(el ? [el] : undefined); });
      },
    };
  });
})();

// The wrapper's only script: "Done" tells XucMgt the work is finished, as the
// XucMgt documentation asks of third-party pages.
document.getElementById("done").addEventListener("click", function () {
  parent.window.postMessage("closeThirdParty", "*");
}, false);

// What the XucMgt documentation asks of a third-party page: post
// closeThirdParty to the agent application when the work is done.
document.getElementById("close").addEventListener("click", function () {
  parent.window.postMessage("closeThirdParty", "*");
}, false);

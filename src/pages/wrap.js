// The wrapper's only script: "Done" tells XucMgt the work is finished, as the
// XucMgt documentation asks of third-party pages.
document.getElementById("done").addEventListener("click", function () {
  parent.window.postMessage("closeThirdParty", "*");
}, false);

// A CRM page that ends the work itself posts "closeThirdParty" to its parent,
// which is this page, not XucMgt: pass that one message on. Only from the
// framed CRM page: any other window could otherwise end the agent's pause.
window.addEventListener("message", function (event) {
  var crm = document.getElementById("crm");
  if (crm && event.source === crm.contentWindow && event.data === "closeThirdParty") {
    parent.window.postMessage("closeThirdParty", "*");
  }
}, false);

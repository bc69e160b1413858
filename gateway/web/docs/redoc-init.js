// Starts ReDoc on /redoc (a file, not an inline script: the page's CSP runs only 'self').
window.addEventListener("DOMContentLoaded", () => {
  window.Redoc.init(
    "/openapi.json",
    { hideDownloadButton: false, expandResponses: "200,201,202", disableSearch: false },
    document.getElementById("redoc"),
  );
});

// Starts Swagger UI on /docs against the gateway's own /openapi.json (no inline script: the
// page's policy allows only this origin's files).
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});

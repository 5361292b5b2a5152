// /docs: Swagger UI over the API's OpenAPI document (a file of its own: the CSP allows no
// inline script).
(function () {
  "use strict";
  SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                   presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
})();

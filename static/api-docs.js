// Renders /api/v1/openapi.json with the vendored Swagger UI.
//
// "Try it out" deliberately does NOT copy the _xsrf cookie into an X-XSRFToken header: requests
// made here with only the browser's session cookie can read, but every write is refused (403) by
// the XSRF check. To write, give an API token to "Authorize" (a bearer token is never sent by a
// browser unasked). So a page that tricks a logged-in user into clicking can never act as them,
// even if it somehow framed this page (the server also forbids framing it).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
  });
})();

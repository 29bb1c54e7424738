// Renders /api/v1/openapi.json with the vendored Swagger UI. "Try it out" uses the
// page's session cookie; requests that change something also need the XSRF token,
// which is copied from the _xsrf cookie into the X-XSRFToken header here.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  function xsrf() {
    var m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : null;
  }
  window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: function (req) {
      var token = xsrf();
      if (token && req.method && req.method.toUpperCase() !== "GET") {
        req.headers["X-XSRFToken"] = token;
      }
      return req;
    },
  });
})();

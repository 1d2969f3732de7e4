// Join page: take the access code from the URL fragment (`/#code=…`, the QR code on the
// slip and the invitation link), then remove it from the address bar. A fragment is
// never sent to the server, so the code reaches no request line or log; it leaves the
// browser only when the person submits the form.
(function () {
  const match = /(?:^#|&)code=([^&]*)/.exec(window.location.hash);
  if (!match) return;
  let code = "";
  try {
    code = decodeURIComponent(match[1]).trim().slice(0, 40);
  } catch {
    code = "";
  }
  // Out of the address bar and history at once, also if the code was unusable.
  history.replaceState(history.state, "", window.location.pathname + window.location.search);
  const field = document.querySelector('form.join-form input[name="code"]');
  if (!field || !code) return;
  if (!field.value) field.value = code;
  const name = document.querySelector('form.join-form input[name="name"]');
  if (name && !name.value) name.focus();
})();

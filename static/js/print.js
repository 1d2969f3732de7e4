// Print button on the code page (inline handlers are forbidden by the CSP).
for (const button of document.querySelectorAll('[data-action="print"]')) {
  button.addEventListener("click", () => window.print());
}

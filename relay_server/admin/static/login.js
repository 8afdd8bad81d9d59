"use strict";
function showLogin() {
  applyText();
  document.title = t("login_title");
  const error = new URLSearchParams(location.search).get("error");
  const box = document.getElementById("error");
  if (error) {
    box.textContent = t("err_" + error);
    box.hidden = false;
  }
}
document.addEventListener("DOMContentLoaded", () => {
  showLogin();
  document.getElementById("lang").addEventListener("click", () => { toggleLang(); showLogin(); });
});

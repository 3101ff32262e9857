// A little help for the forms; every page works without it.
document.addEventListener("DOMContentLoaded", () => {
  // Recording contact: the reason and the new code matter only when contact was made.
  for (const form of document.querySelectorAll("form#record_contact")) {
    const extra = form.querySelector(".when-contact");
    const reason = form.querySelector("input[name=reason]");
    const update = () => {
      const chosen = form.querySelector("input[name=outcome]:checked");
      const made = !chosen || chosen.value === "contact_made";
      extra.hidden = !made;
      reason.required = Boolean(chosen) && made;
    };
    form.addEventListener("change", update);
    update();
  }
});

// barkeep: postgres may start, stop and restart postgresql.service, nothing else.
polkit.addRule(function (action, subject) {
  if (action.id == "org.freedesktop.systemd1.manage-units" &&
      subject.user == "postgres" &&
      action.lookup("unit") == "postgresql.service") {
    var verb = action.lookup("verb");
    if (verb == "start" || verb == "stop" || verb == "restart") {
      return polkit.Result.YES;
    }
  }
});

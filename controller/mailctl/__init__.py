"""mailctl: the controller of the mail appliance."""

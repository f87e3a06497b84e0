"""Planning tools shared by every driver that plans: Reeds-Shepp manoeuvres and their tracker."""

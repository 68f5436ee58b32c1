//! The partner registry and the sandbox's fakes list the same partners, and every partner the
//! app knows has its section, its route and its fake.

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_partner_has_its_fake_its_settings_section_and_route() {
    let app = spawn_app().await;
    let mut registered: Vec<&str> = app.state.partners.iter().map(|p| p.id().as_str()).collect();
    let mut faked: Vec<&str> = app.partners.all().iter().map(|f| f.id()).collect();
    registered.sort();
    faked.sort();
    assert_eq!(registered, faked, "every partner has its fake, and no more");

    let practice = app.new_practice("Registry Practice").await;
    let admin = app.session(&practice.admin, None).await;
    let clinician = app.session(&practice.clinician, None).await;
    let settings = app.page("settings", &admin).await;
    for partner in app.state.partners.iter() {
        let id = partner.id();
        assert!(
            settings.has(&format!("#{id}-settings")),
            "the settings page has {id}'s section"
        );
        assert_eq!(
            settings.attr(&format!("#{id}-settings form"), "hx-post"),
            Some(format!("/hint/settings/{id}")),
        );
        let refused = app
            .post_form(&format!("/hint/settings/{id}"), &clinician, &[])
            .await;
        assert_eq!(refused.status(), 403, "{id}'s settings are for admins");
    }
}

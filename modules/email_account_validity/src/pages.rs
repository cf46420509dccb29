//! What people read: the renewal mail, and the pages `/renew` answers with.
//! The wording follows the original's templates.

/// `DD-MM-YYYY` (UTC) of a timestamp in milliseconds, as the original's
/// templates format it (`format_ts("%d-%m-%Y")`).
pub fn format_date(ts_ms: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (ts_ms / 86_400_000) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{day:02}-{month:02}-{year}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How the user renews: a link to click, or a code to enter in their client.
pub enum Renewal<'a> {
    Link(&'a str),
    Code(&'a str),
}

/// The renewal mail: `(html, text)`.
pub fn renewal_mail(
    display_name: &str,
    expiration_ts: u64,
    renewal: Renewal<'_>,
) -> (String, String) {
    let date = format_date(expiration_ts);
    let (how_text, how_html) = match renewal {
        Renewal::Link(url) => (
            format!("To extend the validity of your account, please click on the link below (or copy and paste it into a new browser tab):\n\n{url}"),
            format!(
                "<p>To extend the validity of your account, please click on the link below (or copy and paste it into a new browser tab):</p>\n<p><a href=\"{0}\">{0}</a></p>",
                escape(url)
            ),
        ),
        Renewal::Code(code) => (
            format!("To extend the validity of your account, please enter the following code in your client:\n\n{code}"),
            format!(
                "<p>To extend the validity of your account, please enter the following code in your client:</p>\n<p><b>{}</b></p>",
                escape(code)
            ),
        ),
    };
    let text = format!(
        "Hello {display_name},\n\nYour account will expire on {date}. This means that you will lose access to your account after this date.\n\n{how_text}\n"
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>Hello {},</p>\n<p>Your account will expire on {date}. This means that you will lose access to your account after this date.</p>\n{how_html}\n</body></html>\n",
        escape(display_name)
    );
    (html, text)
}

fn page(title: &str, body: &str) -> String {
    format!("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><p>{body}</p></body></html>\n")
}

pub fn renewed(expiration_ts: u64) -> String {
    page(
        "Account renewed",
        &format!(
            "Your account has been successfully renewed and is valid until {}.",
            format_date(expiration_ts)
        ),
    )
}

pub fn previously_renewed(expiration_ts: u64) -> String {
    page(
        "Account already renewed",
        &format!(
            "Your account is valid until {}.",
            format_date(expiration_ts)
        ),
    )
}

pub fn invalid_token() -> String {
    page("Invalid renewal token", "Invalid renewal token.")
}

pub fn missing_token() -> String {
    page("Missing renewal token", "Missing renewal token.")
}

#[cfg(test)]
mod tests {
    use super::format_date;

    #[test]
    fn dates_are_day_month_year_in_utc() {
        assert_eq!(format_date(0), "01-01-1970");
        assert_eq!(format_date(951_782_400_000), "29-02-2000");
        assert_eq!(format_date(1_795_651_199_999), "25-11-2026");
        assert_eq!(format_date(1_795_651_200_000), "26-11-2026");
    }
}

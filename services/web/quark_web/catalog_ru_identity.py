"""Russian catalogue of the identity pages: phone numbers, SMS codes, sign-in providers (merged into RU)."""

RU_IDENTITY: dict[str, str] = {
    "Or continue with": "Или продолжить через",
    "Sign in with a code sent to your phone": "Войти по коду из SMS",
    "Username, email or phone": "Имя пользователя, email или телефон",
    "An email address, a phone number, or both.": "Адрес электронной почты, номер телефона или оба.",
    "Phone number": "Номер телефона",
    "With the country code, e.g. +44 7911 123456. We send a code by SMS.":
        "С кодом страны, например +7 916 123-45-67. Мы пришлём код в SMS.",
    "The 6-digit code we sent to your phone by SMS.": "Шестизначный код, который мы прислали в SMS.",
    "Enter the code": "Введите код",
    "We sent a 6-digit code by SMS to": "Мы отправили шестизначный код в SMS на номер",
    "It expires in 5 minutes.": "Он действует 5 минут.",
    "Sign in with your phone": "Вход по номеру телефона",
    "Send the code": "Отправить код",
    "Sign in with a password": "Войти с паролем",
    "Choose your username": "Выберите имя пользователя",
    "This is your first sign-in with this account. Choose the name people will see.":
        "Вы входите с этой учётной записью впервые. Выберите имя, которое увидят другие.",
    "Create my account": "Создать учётную запись",
    "Phone": "Телефон",
    "Your phone number:": "Ваш номер телефона:",
    "New phone number": "Новый номер телефона",
    "Your password": "Ваш пароль",
    "Remove the phone number": "Удалить номер телефона",
    "Sign-in providers": "Вход через другие сервисы",
    "linked": "привязан",
    "Unlink": "Отвязать",
    "Link": "Привязать",
    "Give an email address or a phone number.": "Укажите адрес электронной почты или номер телефона.",
    "The sign-in with the provider did not complete. Try again.":
        "Вход через внешний сервис не завершился. Попробуйте ещё раз.",
}

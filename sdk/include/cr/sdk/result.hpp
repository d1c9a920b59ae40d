// cr::Result<T>: a value or an Error, with CR_TRY to keep error paths one line long.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace cr {

class [[nodiscard]] Error {
public:
    explicit Error(std::string message, int code = 0) : m_message(std::move(message)), m_code(code) {}

    // "openat /x: No such file or directory"
    static Error from_errno(std::string_view what, std::string_view subject = {}, int err = errno) {
        std::string m(what);
        if (!subject.empty()) {
            m += ' ';
            m += subject;
        }
        m += ": ";
        m += std::strerror(err);
        return Error(std::move(m), err);
    }

    // Adds context in front: "pid 42: " + message.
    [[nodiscard]] Error context(std::string_view prefix) && {
        m_message.insert(0, std::string(prefix) + ": ");
        return std::move(*this);
    }

    [[nodiscard]] const std::string& message() const { return m_message; }
    [[nodiscard]] int code() const { return m_code; }

private:
    std::string m_message;
    int m_code;
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_v(std::in_place_index<0>, std::move(value)) {}  // NOLINT
    Result(Error error) : m_v(std::in_place_index<1>, std::move(error)) {}  // NOLINT

    [[nodiscard]] bool ok() const { return m_v.index() == 0; }
    explicit operator bool() const { return ok(); }
    [[nodiscard]] T& value() & { return std::get<0>(m_v); }
    [[nodiscard]] const T& value() const& { return std::get<0>(m_v); }
    [[nodiscard]] T&& value() && { return std::get<0>(std::move(m_v)); }
    [[nodiscard]] const Error& error() const& { return std::get<1>(m_v); }
    [[nodiscard]] Error&& error() && { return std::get<1>(std::move(m_v)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

private:
    std::variant<T, Error> m_v;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : m_error(std::move(error)), m_ok(false) {}  // NOLINT

    [[nodiscard]] bool ok() const { return m_ok; }
    explicit operator bool() const { return ok(); }
    void value() const {}
    [[nodiscard]] const Error& error() const& { return m_error; }
    [[nodiscard]] Error&& error() && { return std::move(m_error); }

private:
    Error m_error{""};
    bool m_ok = true;
};

namespace detail {
template <typename T>
decltype(auto) take_value(Result<T>&& r) {
    if constexpr (std::is_void_v<T>) {
        return;
    } else {
        return std::move(r).value();
    }
}
}  // namespace detail

}  // namespace cr

// Evaluates a Result expression; returns its Error from the enclosing function or yields the value.
#define CR_TRY(expr)                                              \
    ({                                                            \
        auto cr_try_result_ = (expr);                             \
        if (!cr_try_result_.ok()) return std::move(cr_try_result_).error(); \
        ::cr::detail::take_value(std::move(cr_try_result_));      \
    })

// As CR_TRY, with context put in front of the message.
#define CR_TRY_CTX(expr, ctx)                                                   \
    ({                                                                          \
        auto cr_try_result_ = (expr);                                           \
        if (!cr_try_result_.ok()) return std::move(cr_try_result_).error().context(ctx); \
        ::cr::detail::take_value(std::move(cr_try_result_));                    \
    })

#!/usr/bin/env python3
"""Generates the emulated banks' per-customer data (sample_data/banks/*.json) from the
reference documents: each external account and product goes to the bank its AccountBank /
ProductBank names, translated into that bank's API style, plus a few extra records for variety
(a credit card, an account in EUR, an overdrawn account). Deterministic: rerunning it rewrites
the same files. External ids follow shared::institutions (GB-ACC-…, mdb-acc-…, GB-PRD-…)."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "sample_data"
FRIDA = ("65a546ae4a8f64e8f88fb89e", "fridaklo")


def load(name):
    return json.loads((DATA / f"{name}.json").read_text())


def date(value):
    return value["$date"] if isinstance(value, dict) else value


def money(amount):
    return f"{abs(amount):.2f}"


def customer(banks, bank, user):
    key = user["UserId"]["$oid"]
    c = banks[bank].setdefault(key, {"customerId": key, "userName": user["UserName"]})
    return c


def green_account(a, subtype=None):
    number = a["AccountNumber"]
    account = {
        "AccountId": f"GB-ACC-{number}",
        "Status": "Enabled",
        "StatusUpdateDateTime": date(a["AccountDate"]["OpeningDate"]),
        "Currency": a["AccountCurrency"],
        "AccountType": "Personal",
        "AccountSubType": subtype or {"Savings": "Savings", "Checking": "CurrentAccount"}[a["AccountType"]],
        "Description": a.get("GreenAccountNarrative", ""),
        "OpeningDate": date(a["AccountDate"]["OpeningDate"]),
        "Account": [{"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": number,
                     "Name": a["AccountUser"]["UserName"]}],
        "GreenAccountNarrative": a.get("GreenAccountNarrative", ""),
    }
    balance = {
        "AccountId": account["AccountId"],
        "Amount": {"Amount": money(a["AccountBalance"]), "Currency": a["AccountCurrency"]},
        "CreditDebitIndicator": "Debit" if a["AccountBalance"] < 0 else "Credit",
        "Type": "InterimAvailable",
        "DateTime": "2025-01-20T00:00:00.000Z",
    }
    return account, balance


def mdb_account(a, cash_type=None):
    number = a["AccountNumber"]
    amount = a["AccountBalance"]
    return {
        "resourceId": f"mdb-acc-{number}",
        "iban": f"DE89370400440{number}",
        "bban": number,
        "currency": a["AccountCurrency"],
        "name": f"{a['AccountType']} account",
        "product": a["AccountType"],
        "cashAccountType": cash_type or {"Savings": "SVGS", "Checking": "CACC"}[a["AccountType"]],
        "status": "enabled",
        "ownerName": a["AccountUser"]["UserName"],
        "openingDate": date(a["AccountDate"]["OpeningDate"])[:10],
        "details": a.get("MDBAccountNarrative", ""),
        "balances": [
            {"balanceAmount": {"currency": a["AccountCurrency"], "amount": f"{amount:.2f}"},
             "balanceType": "interimAvailable", "referenceDate": "2025-01-20"},
            {"balanceAmount": {"currency": a["AccountCurrency"], "amount": f"{amount:.2f}"},
             "balanceType": "closingBooked", "referenceDate": "2025-01-19"},
        ],
    }


def green_product(p):
    product = {
        "ProductId": f"GB-PRD-{p['ProductId']}",
        "ProductName": p.get("GreenProductNarrative", p["ProductType"]),
        "ProductType": {"Loan": "PersonalLoan", "Mortgage": "Mortgage", "CreditCard": "CreditCard"}[p["ProductType"]],
        "Status": "Active",
        "OpeningDate": date(p["ProductDate"]["OpeningDate"]),
        "OutstandingBalance": {"Amount": money(p["ProductAmount"]), "Currency": p["ProductCurrency"]},
        "InterestRate": f"{p['ProductInterestRate']:.2f}",
        "GreenProductNarrative": p.get("GreenProductNarrative", ""),
    }
    for key in ("RepaymentPeriod", "LoanCollateral", "AmortizationPeriod", "PropertyDetails", "CreditLimit"):
        if key in p:
            product[key] = p[key]
    return product


def mdb_product(p):
    product = {
        "resourceId": f"mdb-prd-{p['ProductId']}",
        "productType": {"Loan": "consumerLoan", "Mortgage": "mortgage"}[p["ProductType"]],
        "status": "active",
        "startDate": date(p["ProductDate"]["OpeningDate"])[:10],
        "outstandingAmount": {"currency": p["ProductCurrency"], "amount": f"{p['ProductAmount']:.2f}"},
        "interestRate": f"{p['ProductInterestRate']:.2f}",
        "details": p.get("MDBProductNarrative", ""),
    }
    for key, target in (("RepaymentPeriod", "repaymentPeriodMonths"), ("AmortizationPeriod", "amortizationPeriodYears")):
        if key in p:
            product[target] = p[key]
    if "LoanCollateral" in p:
        product["collateral"] = p["LoanCollateral"]
    if "PropertyDetails" in p:
        product["property"] = {"address": p["PropertyDetails"]["Address"],
                               "value": {"currency": p["ProductCurrency"],
                                         "amount": f"{p['PropertyDetails']['PropertyValue']:.2f}"}}
    return product


def main():
    banks = {"green-bank": {}, "mongodb-bank": {}}
    for a in load("open_finance.external_accounts"):
        if a["AccountBank"] == "Green Bank":
            account, balance = green_account(a)
            c = customer(banks, "green-bank", a["AccountUser"])
            c.setdefault("accounts", []).append(account)
            c.setdefault("balances", []).append(balance)
        else:
            customer(banks, "mongodb-bank", a["AccountUser"]).setdefault("accounts", []).append(mdb_account(a))
    for p in load("open_finance.external_products"):
        if p["ProductBank"] == "Green Bank":
            customer(banks, "green-bank", p["ProductCustomer"]).setdefault("products", []).append(green_product(p))
        else:
            customer(banks, "mongodb-bank", p["ProductCustomer"]).setdefault("loans", []).append(mdb_product(p))

    # Variety for the normalisers, all for the demo user fridaklo.
    frida = {"UserId": {"$oid": FRIDA[0]}, "UserName": FRIDA[1]}
    overdrawn, balance = green_account({
        "AccountNumber": "400118822", "AccountType": "Checking", "AccountBalance": -312.45,
        "AccountCurrency": "USD", "AccountUser": frida,
        "AccountDate": {"OpeningDate": "2023-05-02T10:00:00.000Z"},
        "GreenAccountNarrative": "Everyday current account at Green Bank"})
    c = customer(banks, "green-bank", frida)
    c.setdefault("accounts", []).append(overdrawn)
    c.setdefault("balances", []).append(balance)
    c.setdefault("products", []).append({
        "ProductId": "GB-PRD-7001", "ProductName": "Green Rewards Credit Card", "ProductType": "CreditCard",
        "Status": "Active", "OpeningDate": "2022-09-14T08:30:00.000Z",
        "OutstandingBalance": {"Amount": "1250.40", "Currency": "USD"}, "InterestRate": "21.90",
        "CreditLimit": {"Amount": "5000.00", "Currency": "USD"},
        "GreenProductNarrative": "Credit card with rewards for sustainable purchases"})
    customer(banks, "mongodb-bank", frida).setdefault("accounts", []).append(mdb_account({
        "AccountNumber": "770051234", "AccountType": "Savings", "AccountBalance": 3200.5,
        "AccountCurrency": "EUR", "AccountUser": frida,
        "AccountDate": {"OpeningDate": "2021-02-11T09:00:00.000Z"},
        "MDBAccountNarrative": "Euro savings account at MongoDB Bank"}))

    # A Berlin Group card account (its own resource at MongoDB Bank), for claumon.
    clau = next(c for c in banks["mongodb-bank"].values() if c["userName"] == "claumon")
    clau["cardAccounts"] = [{
        "resourceId": "mdb-card-4417", "maskedPan": "541275******4417", "currency": "USD",
        "name": "MongoDB Bank Everyday Card", "product": "Credit card", "status": "enabled",
        "openingDate": "2023-03-01", "interestRate": "19.90",
        "creditLimit": {"currency": "USD", "amount": "4000.00"},
        "balances": [
            {"balanceType": "interimBooked", "balanceAmount": {"currency": "USD", "amount": "-612.75"},
             "referenceDate": "2025-01-20"},
            {"balanceType": "closingBooked", "balanceAmount": {"currency": "USD", "amount": "-598.10"},
             "referenceDate": "2025-01-19"},
        ],
    }]

    for bank, customers in banks.items():
        out = {"institution": bank, "customers": sorted(customers.values(), key=lambda c: c["customerId"])}
        (DATA / "banks" / f"{bank}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
